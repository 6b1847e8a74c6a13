//! deploy/kubernetes: the manifests parsed, cross-checked, and their settings and desired state loaded.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::*;

/// Every document of every deploy/kubernetes/*.yaml, by kind.
fn manifests() -> BTreeMap<String, Value> {
    let dir = repo("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut by_kind = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a readable manifest");
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", file.display()));
            let kind = value["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: a document without kind", file.display()))
                .to_string();
            if kind != "Namespace" {
                assert_eq!(
                    value["metadata"]["namespace"],
                    NAMESPACE,
                    "{}: every object lives in stacksetd's own namespace",
                    file.display()
                );
            }
            assert!(
                by_kind.insert(kind.clone(), value).is_none(),
                "two {kind} manifests"
            );
        }
    }
    by_kind
}

/// stacksetd's own namespace (00-namespace.yaml).
const NAMESPACE: &str = "stacksetd";

fn kind<'a>(all: &'a BTreeMap<String, Value>, kind: &str) -> &'a Value {
    all.get(kind)
        .unwrap_or_else(|| panic!("deploy/kubernetes has no {kind}"))
}

/// True when every label of `selector` is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("a selector is a map");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn container(all: &BTreeMap<String, Value>) -> &Value {
    let containers = kind(all, "Deployment")["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers is a list");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn container_env(all: &BTreeMap<String, Value>) -> Vec<(String, String)> {
    container(all)["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let value = e["value"]
                .as_str()
                .unwrap_or_else(|| panic!("env {} has a literal string value", e["name"]));
            (
                e["name"].as_str().expect("env name").to_string(),
                value.to_string(),
            )
        })
        .collect()
}

#[test]
fn the_deployment_runs_one_locked_down_daemon_with_probes_and_resources() {
    let all = manifests();
    let deployment = kind(&all, "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 1, "one daemon per organization");
    assert_eq!(
        spec["strategy"]["type"], "Recreate",
        "a rollout must never run two daemons at once"
    );
    let pod = &spec["template"]["spec"];
    assert!(selects(
        &spec["selector"]["matchLabels"],
        &spec["template"]["metadata"]["labels"]
    ));

    let c = container(&all);
    let port = c["ports"]
        .as_array()
        .and_then(|p| p.first())
        .expect("a container port");
    assert_eq!(port["containerPort"], HTTP_PORT);
    let port_name = port["name"].as_str().expect("the port is named");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert!(
            get["port"] == port_name || get["port"] == HTTP_PORT,
            "{probe} targets the HTTP port"
        );
    }
    for (bound, resource) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "cpu"),
        ("limits", "memory"),
    ] {
        assert!(
            c["resources"][bound][resource].is_string(),
            "resources.{bound}.{resource} is set"
        );
    }

    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(
        sc["runAsNonRoot"] == true || pod["securityContext"]["runAsNonRoot"] == true,
        "runAsNonRoot"
    );
    assert!(
        sc["seccompProfile"]["type"] == "RuntimeDefault"
            || pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    );

    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds is set");
    assert!(
        Duration::from_secs(grace) > documented_shutdown_timeout(),
        "the grace period must exceed the drain"
    );

    let account = kind(&all, "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .is_some_and(|arn| arn.starts_with("arn:aws:iam::")),
        "the ServiceAccount shows the IRSA role annotation"
    );
}

#[test]
fn the_pod_reads_its_files_from_the_configmap_directory_so_edits_reach_the_file_watch() {
    let all = manifests();
    let pod = &kind(&all, "Deployment")["spec"]["template"]["spec"];
    let config_map = kind(&all, "ConfigMap");
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["configMap"]["name"] == config_map["metadata"]["name"])
        .expect("a volume from the ConfigMap");
    let mount = container(&all)["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == volume["name"])
        .expect("the ConfigMap volume is mounted");
    assert_eq!(mount["mountPath"], "/etc/stacksetd");
    assert_eq!(mount["readOnly"], true);
    assert!(
        mount["subPath"].is_null(),
        "subPath mounts never receive ConfigMap updates"
    );

    // The desired state shipped is the documented example, and it is valid.
    let desired = config_map["data"]["desired.yaml"]
        .as_str()
        .expect("the ConfigMap has desired.yaml");
    assert_eq!(
        desired,
        read("config/aimably-data-only.yaml"),
        "the ConfigMap's desired.yaml is a copy of config/aimably-data-only.yaml"
    );
    let deployments = stacksetd::desired::parse_str(desired, Path::new("desired.yaml"))
        .unwrap_or_else(|e| panic!("the ConfigMap's desired state is invalid: {e}"));
    assert_eq!(deployments.len(), 1);

    // The settings file plus the container's STACKSETD_ variables are what the daemon loads at start.
    let settings_text = config_map["data"]["stacksetd.yaml"]
        .as_str()
        .expect("the ConfigMap has stacksetd.yaml");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let settings_file = dir.path().join("stacksetd.yaml");
    std::fs::write(&settings_file, settings_text).expect("write the settings copy");
    let env: Vec<(String, String)> = container_env(&all)
        .into_iter()
        .filter(|(k, _)| k.starts_with("STACKSETD_"))
        .collect();
    let settings = Settings::load_from(Some(&settings_file), &Overrides::default(), env)
        .unwrap_or_else(|e| panic!("the pod's settings do not load: {e}"));
    assert_eq!(
        settings.listen,
        std::net::SocketAddr::from(([0, 0, 0, 0], HTTP_PORT)),
        "in a pod the daemon must listen beyond loopback for the kubelet and Prometheus"
    );
    assert_eq!(
        settings.desired_state,
        Path::new("/etc/stacksetd/desired.yaml")
    );
}

#[test]
fn service_links_are_off_because_their_variables_would_be_unknown_settings() {
    // Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT, ... for each Service in the namespace; for the
    // Service named stacksetd they look like settings, and unknown settings are refused.
    let all = manifests();
    let service_name = kind(&all, "Service")["metadata"]["name"]
        .as_str()
        .expect("the Service is named")
        .to_uppercase()
        .replace('-', "_");
    let injected = [(
        format!("{service_name}_SERVICE_HOST"),
        "10.0.0.1".to_string(),
    )];
    assert!(
        settings_with_env(&injected).is_err(),
        "a service-link variable is refused as a setting"
    );
    assert_eq!(
        kind(&all, "Deployment")["spec"]["template"]["spec"]["enableServiceLinks"],
        false
    );
}

#[test]
fn the_service_and_servicemonitor_expose_metrics_every_30s() {
    let all = manifests();
    let pod_labels = &kind(&all, "Deployment")["spec"]["template"]["metadata"]["labels"];
    let service = kind(&all, "Service");
    assert!(
        selects(&service["spec"]["selector"], pod_labels),
        "the Service selects the pod"
    );
    let port = service["spec"]["ports"]
        .as_array()
        .and_then(|p| p.first())
        .expect("a Service port");
    assert_eq!(port["name"], "metrics");
    assert_eq!(port["port"], HTTP_PORT);

    let monitor = kind(&all, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert!(
        selects(
            &monitor["spec"]["selector"]["matchLabels"],
            &service["metadata"]["labels"]
        ),
        "the ServiceMonitor selects the Service"
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "30s");
}

#[test]
fn the_namespace_is_stacksetds_own_and_applied_first() {
    let all = manifests();
    let namespace = kind(&all, "Namespace");
    assert_eq!(namespace["metadata"]["name"], NAMESPACE);
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    // kubectl applies a directory in file-name order: the namespace file sorts first.
    let mut files: Vec<String> = std::fs::read_dir(repo("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    let first = read(&format!("deploy/kubernetes/{}", files[0]));
    assert!(
        first.contains("kind: Namespace"),
        "{} sorts first, not the namespace",
        files[0]
    );
}

#[test]
fn the_network_policy_admits_only_monitoring_to_the_metrics_port_and_lets_out_only_dns_and_https() {
    let all = manifests();
    let policy = kind(&all, "NetworkPolicy");
    let spec = &policy["spec"];
    let pod_labels = &kind(&all, "Deployment")["spec"]["template"]["metadata"]["labels"];
    assert!(
        selects(&spec["podSelector"]["matchLabels"], pod_labels),
        "it selects the pod"
    );
    let types: Vec<&str> = spec["policyTypes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        types,
        ["Ingress", "Egress"],
        "both directions are restricted"
    );

    let ingress = spec["ingress"].as_array().expect("ingress rules");
    assert_eq!(ingress.len(), 1);
    let from = ingress[0]["from"].as_array().expect("ingress has a source");
    assert_eq!(from.len(), 1);
    assert!(from[0]["ipBlock"].is_null() && from[0]["podSelector"].is_null());
    assert_eq!(
        from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    let port_name = container(&all)["ports"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let ports = ingress[0]["ports"]
        .as_array()
        .expect("ingress names its ports");
    assert_eq!(ports.len(), 1);
    assert!(
        ports[0]["port"] == port_name.as_str() || ports[0]["port"] == HTTP_PORT,
        "only the metrics port"
    );

    let mut allowed = std::collections::BTreeSet::new();
    for rule in spec["egress"].as_array().expect("egress rules") {
        assert!(rule["to"].is_null() || rule["to"].as_array().is_some_and(|t| !t.is_empty()));
        for port in rule["ports"]
            .as_array()
            .expect("every egress rule names its ports")
        {
            allowed.insert((
                port["port"].as_u64().expect("numeric port"),
                port["protocol"].as_str().unwrap().to_string(),
            ));
        }
    }
    let expected: std::collections::BTreeSet<(u64, String)> =
        [(53, "UDP"), (53, "TCP"), (443, "TCP")]
            .into_iter()
            .map(|(p, t)| (p, t.to_string()))
            .collect();
    assert_eq!(allowed, expected, "egress: DNS and HTTPS only");
}

#[test]
fn the_service_account_uses_irsa_with_a_trust_policy_pinned_to_sub_and_aud_and_no_api_token() {
    let all = manifests();
    let account = kind(&all, "ServiceAccount");
    assert!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .is_some_and(|a| a.starts_with("arn:aws:iam::")),
        "the IRSA annotation is there to fill in"
    );
    assert_eq!(account["automountServiceAccountToken"], false);
    let pod = &kind(&all, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["automountServiceAccountToken"], false,
        "stacksetd never calls the Kubernetes API"
    );
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);

    let trust: Value =
        serde_json::from_str(&read("deploy/iam/irsa-trust-policy.json")).expect("JSON");
    let statements = trust["Statement"].as_array().expect("statements");
    assert_eq!(statements.len(), 1);
    let s = &statements[0];
    assert_eq!(s["Action"], "sts:AssumeRoleWithWebIdentity");
    assert!(
        s["Principal"]["Federated"]
            .as_str()
            .unwrap()
            .contains(":oidc-provider/")
    );
    let equals = s["Condition"]["StringEquals"]
        .as_object()
        .expect("StringEquals conditions");
    let subject = format!(
        "system:serviceaccount:{NAMESPACE}:{}",
        account["metadata"]["name"].as_str().unwrap()
    );
    assert!(
        equals
            .iter()
            .any(|(k, v)| k.ends_with(":sub") && *v == subject.as_str()),
        "sub pinned to {subject}"
    );
    assert!(
        equals
            .iter()
            .any(|(k, v)| k.ends_with(":aud") && *v == "sts.amazonaws.com"),
        "aud pinned to STS"
    );
    assert!(
        s["Condition"]["StringLike"].is_null(),
        "no wildcard subject"
    );
    let doc = read("deploy/kubernetes/serviceaccount.yaml");
    assert!(
        doc.contains("irsa-trust-policy.json"),
        "the ServiceAccount points at the trust policy example"
    );
}

/// The two-replica variant (deploy/kubernetes/ha/): the same pod as the one-replica Deployment, plus the lease
/// table, each pod's name as its replica id, and spread over nodes; the settings it sets are valid.
#[test]
fn the_ha_variant_is_the_same_pod_with_two_replicas_sharing_a_lease_table() {
    let single = manifests();
    let text = read("deploy/kubernetes/ha/deployment.yaml");
    let ha: Value = serde_norway::from_str(&text).expect("valid YAML");
    let one = kind(&single, "Deployment");
    assert_eq!(ha["kind"], "Deployment");
    assert_eq!(
        ha["metadata"], one["metadata"],
        "it replaces the one-replica Deployment"
    );
    assert_eq!(ha["spec"]["replicas"], 2);
    let pod = &ha["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    for key in [
        "image",
        "args",
        "securityContext",
        "resources",
        "livenessProbe",
        "readinessProbe",
        "volumeMounts",
    ] {
        assert_eq!(
            container[key], one["spec"]["template"]["spec"]["containers"][0][key],
            "{key}"
        );
    }
    for key in [
        "securityContext",
        "volumes",
        "serviceAccountName",
        "automountServiceAccountToken",
    ] {
        assert_eq!(pod[key], one["spec"]["template"]["spec"][key], "{key}");
    }
    assert!(pod["affinity"]["podAntiAffinity"].is_object());
    let env = container["env"].as_array().expect("env");
    let named = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        named("STACKSETD_LEASES__REPLICA_ID")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    let table = named("STACKSETD_LEASES__TABLE")["value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let settings = settings_with_env(&[
        ("STACKSETD_LEASES__TABLE".into(), table.clone()),
        (
            "STACKSETD_LEASES__REPLICA_ID".into(),
            "stacksetd-7d9f-abcde".into(),
        ),
    ])
    .expect("the HA variant's settings are valid");
    assert_eq!(settings.leases.table.as_deref(), Some(table.as_str()));
}
