//! `stacksetd template check FILE|URL` and `stacksetd template diff OLD NEW`: the guard's judgment offline, so an
//! operator can review a vendor's new version before pinning it. `diff` decides exactly as the daemon does
//! (`template::decide` with the same settings), so what it prints is what a pass would do.
//!
//! Exit codes: `check` 0 when the template passes (or no level is asked), 1 refused or error; `diff` 0 not
//! widening, 2 widening (held under `updates: Auto`), 1 refused or error.

use std::path::Path;

use serde_json::json;

use crate::cli::output::safe;
use crate::desired::{PolicyLevel, TemplateSpec, UpdatePolicy};
use crate::error::Error;
use crate::guard::{self, Parameters};
use crate::template::{self, Fetcher, MAX_TEMPLATE_BODY_BYTES, Template};

/// `FILE` (a path) or a URL: https, http to loopback, file://.
pub async fn load(source: &str) -> Result<Template, Error> {
    let url = if source.contains("://") {
        source.to_string()
    } else {
        let path = Path::new(source);
        let absolute = std::path::absolute(path).map_err(|e| Error::Template {
            url: source.to_string(),
            reason: format!("cannot resolve the path: {e}"),
            label: "template_fetch",
        })?;
        url::Url::from_file_path(&absolute)
            .map_err(|()| Error::Template {
                url: source.to_string(),
                reason: "not a file path".into(),
                label: "template_fetch",
            })?
            .to_string()
    };
    Fetcher::new().fetch(&url).await
}

/// `K=V` pairs from `--parameters`.
pub fn parameters(pairs: &[String]) -> Result<Parameters, String> {
    let mut out = Parameters::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("--parameters {pair}: write NAME=VALUE"));
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn spec(level: Option<PolicyLevel>) -> TemplateSpec {
    TemplateSpec {
        policy: level,
        url: None,
        sha256: None,
        updates: UpdatePolicy::Auto,
        allow_permission_widening: false,
        // A size problem is reported as a note, not as the decision: the reviewer may have a staging bucket.
        staging_bucket: Some("review".into()),
        access_analyzer: false,
    }
}

/// The report of `template check`, and its exit code.
pub fn check(
    t: &Template,
    level: Option<PolicyLevel>,
    params: &Parameters,
    json_output: bool,
) -> (String, u8) {
    let review = match guard::review(&t.document, params, level) {
        Ok(r) => r,
        Err(too_complex) => {
            let text = if json_output {
                json!({"url": t.url, "sha256": t.sha256, "error": too_complex.to_string()})
                    .to_string()
            } else {
                format!(
                    "template {} sha256:{}\n  refused: {too_complex}\n",
                    safe(&t.url),
                    t.sha256
                )
            };
            return (text, 1);
        }
    };
    let code = if review.refused() { 1 } else { 0 };
    let large = t.body.len() > MAX_TEMPLATE_BODY_BYTES;
    if json_output {
        let doc = json!({
            "url": t.url,
            "sha256": t.sha256,
            "bytes": t.body.len(),
            "needsStagingBucket": large,
            "review": review,
            "refused": review.refused(),
        });
        return (serde_json::to_string_pretty(&doc).unwrap_or_default(), code);
    }
    let mut out = format!(
        "template {} sha256:{} ({} bytes)\n",
        safe(&t.url),
        t.sha256,
        t.body.len()
    );
    if large {
        out.push_str(&format!(
            "  note: over CloudFormation's {MAX_TEMPLATE_BODY_BYTES}-byte TemplateBody limit: the deployment needs \
             spec.template.stagingBucket\n"
        ));
    }
    if let Some(fails) = &review.fails {
        out.push_str(&format!(
            "  note: CloudFormation would fail to deploy it: {}\n",
            safe(fails)
        ));
    }
    out.push_str("resources:\n");
    for r in &review.resources {
        out.push_str(&format!(
            "  {} ({}; {}): {}{}\n",
            safe(&r.id),
            safe(&r.kind),
            r.class,
            safe(&r.does),
            if r.conditional {
                " [only in some deploy-time cases]"
            } else {
                ""
            }
        ));
    }
    for t in &review.transforms {
        out.push_str(&format!(
            "  {}: rewrites the template at deploy time\n",
            safe(t)
        ));
    }
    if !review.identities.is_empty() {
        out.push_str("permissions:\n");
        for identity in &review.identities {
            out.push_str(&format!("  {}\n", safe(&identity.identity)));
            for line in &identity.lines {
                out.push_str(&format!("    {}\n", safe(line)));
            }
        }
    }
    match review.level {
        Some(level) if review.refused() => {
            out.push_str(&format!("level {level}: refused\n"));
            for o in &review.check.offenses {
                out.push_str(&format!(
                    "  refused: {} at {}\n",
                    safe(&o.reason),
                    safe(&o.location)
                ));
            }
        }
        Some(level) => out.push_str(&format!("level {level}: passes\n")),
        None => {
            out.push_str("level: none asked (--policy DataOnly|DataAndScheduling checks one)\n")
        }
    }
    for w in &review.check.warnings {
        out.push_str(&format!("  warning: {}\n", safe(w)));
    }
    (out, code)
}

/// The report of `template diff`: the daemon's decision for NEW with OLD applied, and its exit code.
pub fn diff(
    old: &Template,
    new: &Template,
    level: Option<PolicyLevel>,
    params: &Parameters,
    json_output: bool,
) -> (String, u8) {
    let assessment = template::decide(
        &spec(level),
        params,
        template::Baseline::Approved(&old.document),
        new,
    );
    let decision = &assessment.decision;
    let widening = decision.judgment().is_some_and(|j| j.is_widening());
    let code = match decision.label() {
        "up_to_date" | "apply" => 0,
        "held_permission_widening" => 2,
        _ => 1,
    };
    if json_output {
        let doc = json!({
            "old": {"url": old.url, "sha256": old.sha256},
            "new": {"url": new.url, "sha256": new.sha256, "bytes": new.body.len()},
            "decision": decision.label(),
            "message": decision.message(&new.sha256),
            "widening": widening,
            "judgment": decision.judgment(),
            "offenses": match decision {
                template::Decision::Refuse { offenses } => json!(offenses),
                _ => json!([]),
            },
            "warnings": assessment.warnings,
        });
        return (serde_json::to_string_pretty(&doc).unwrap_or_default(), code);
    }
    let mut out = format!(
        "old {} sha256:{}\nnew {} sha256:{}\ndecision: {} ({})\n",
        safe(&old.url),
        old.sha256,
        safe(&new.url),
        new.sha256,
        decision.label(),
        safe(&decision.message(&new.sha256))
    );
    if let Some(j) = decision.judgment() {
        let (wide, other): (Vec<_>, Vec<_>) = j.findings.iter().partition(|f| f.widening);
        if !wide.is_empty() {
            out.push_str("widening:\n");
            for f in wide {
                out.push_str(&format!("  ! {}\n", safe(&f.line())));
                if !f.path.is_empty() {
                    out.push_str(&format!("      at {}\n", safe(&f.path)));
                }
            }
        }
        if !other.is_empty() {
            out.push_str("other changes:\n");
            for f in other {
                out.push_str(&format!("    {}\n", safe(&f.line())));
                if !f.path.is_empty() {
                    out.push_str(&format!("      at {}\n", safe(&f.path)));
                }
            }
        }
        if j.findings.is_empty() {
            out.push_str("no change in what the template can do\n");
        }
    }
    if let template::Decision::Refuse { offenses } = decision {
        for o in offenses {
            out.push_str(&format!(
                "  refused: {} at {}\n",
                safe(&o.reason),
                safe(&o.location)
            ));
        }
    }
    for w in &assessment.warnings {
        out.push_str(&format!("  warning: {}\n", safe(w)));
    }
    (out, code)
}
