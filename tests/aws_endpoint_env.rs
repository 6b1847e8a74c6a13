//! `AwsCloud::connect` against fake AWS endpoints on loopback: the standard endpoint variables
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`) redirect the clients, the `endpoint_url` setting overrides
//! them all, and redirected Organizations requests are signed for the configured Region. The responses go through
//! the SDK's real deserializers, so this also checks that omitted XML fields stay unknown.
//!
//! This is its own test binary because it sets process environment variables, which no other test may race with.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use stacksetd::cloud::aws::{AwsCloud, AwsSettings};
use stacksetd::cloud::{CallAs, Cloud};

/// One request a fake endpoint received: which endpoint, which service, and the Region it was signed for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    endpoint: &'static str,
    service: String,
    signing_region: String,
}

type Log = Arc<Mutex<Vec<Seen>>>;

const STS_RESPONSE: &str = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:iam::111111111111:user/stacksetd</Arn>
    <UserId>AIDAEXAMPLE</UserId>
    <Account>111111111111</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>"#;

/// What moto answers: no AutoDeployment, OrganizationalUnitIds or Regions.
const CFN_RESPONSE: &str = r#"<DescribeStackSetResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
  <DescribeStackSetResult>
    <StackSet>
      <StackSetName>vendor-access</StackSetName>
      <Status>ACTIVE</Status>
      <TemplateBody>Resources: {}</TemplateBody>
      <PermissionModel>SERVICE_MANAGED</PermissionModel>
    </StackSet>
  </DescribeStackSetResult>
  <ResponseMetadata><RequestId>2</RequestId></ResponseMetadata>
</DescribeStackSetResponse>"#;

const ORGS_RESPONSE: &str =
    r#"{"Organization":{"Id":"o-abc","MasterAccountId":"111111111111","FeatureSet":"ALL"}}"#;

/// Serve HTTP/1.1 on loopback, answering STS, CloudFormation and Organizations requests; returns the base URL.
async fn fake_endpoint(name: &'static str, log: Log) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                // Keep-alive: several requests may share one connection.
                loop {
                    let mut headers = Vec::new();
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let line = line.trim_end().to_string();
                        if line.is_empty() {
                            break;
                        }
                        headers.push(line);
                    }
                    let header = |name: &str| {
                        headers.iter().find_map(|h| {
                            let (key, value) = h.split_once(':')?;
                            key.eq_ignore_ascii_case(name)
                                .then(|| value.trim().to_string())
                        })
                    };
                    let length: usize = header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let body = String::from_utf8_lossy(&body);
                    // Credential=KEY/DATE/REGION/SERVICE/aws4_request
                    let scope: Vec<String> = header("authorization")
                        .and_then(|a| a.split("Credential=").nth(1).map(str::to_string))
                        .map(|c| c.split('/').map(str::to_string).collect())
                        .unwrap_or_default();
                    let signing_region = scope.get(2).cloned().unwrap_or_default();
                    let service = scope.get(3).cloned().unwrap_or_default();
                    let (content_type, response) = if body.contains("Action=GetCallerIdentity") {
                        ("text/xml", STS_RESPONSE)
                    } else if body.contains("Action=DescribeStackSet") {
                        ("text/xml", CFN_RESPONSE)
                    } else {
                        ("application/x-amz-json-1.1", ORGS_RESPONSE)
                    };
                    log.lock().expect("log").push(Seen {
                        endpoint: name,
                        service,
                        signing_region,
                    });
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{response}",
                        response.len()
                    );
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn seen(endpoint: &'static str, service: &str, region: &str) -> Seen {
    Seen {
        endpoint,
        service: service.to_string(),
        signing_region: region.to_string(),
    }
}

async fn call_every_service(cloud: &AwsCloud) {
    assert_eq!(cloud.caller_account().await.expect("sts"), "111111111111");
    let org = cloud.describe_organization().await.expect("organizations");
    assert_eq!(org.management_account_id, "111111111111");
    let set = cloud
        .describe_stack_set("vendor-access", CallAs::SelfAccount)
        .await
        .expect("cloudformation")
        .expect("exists");
    assert_eq!(set.permission_model.as_deref(), Some("SERVICE_MANAGED"));
    assert_eq!(set.settings.auto_deployment, None);
    assert_eq!(set.organizational_unit_ids, None);
    assert_eq!(set.regions, None);
}

#[tokio::test]
async fn endpoint_variables_and_setting_redirect_the_clients() {
    let log: Log = Arc::default();
    let global = fake_endpoint("global", log.clone()).await;
    let cloudformation = fake_endpoint("cloudformation", log.clone()).await;
    let setting = fake_endpoint("setting", log.clone()).await;

    // SAFETY: this binary has this one test, and no thread reads the environment while it is changed here.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDTEST");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret");
        std::env::set_var("AWS_REGION", "eu-west-1");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/aws-config");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        );
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
        std::env::remove_var("AWS_ENDPOINT_URL_STS");
        std::env::remove_var("AWS_ENDPOINT_URL_ORGANIZATIONS");
        std::env::set_var("AWS_ENDPOINT_URL", &global);
        std::env::set_var("AWS_ENDPOINT_URL_CLOUDFORMATION", &cloudformation);
    }

    // The environment alone: the SDK reads both variables; Organizations there is signed for the configured Region.
    let cloud = AwsCloud::connect(&AwsSettings::default())
        .await
        .expect("connect");
    call_every_service(&cloud).await;
    assert_eq!(
        log.lock().expect("log").drain(..).collect::<Vec<_>>(),
        [
            seen("global", "sts", "eu-west-1"),
            seen("global", "organizations", "eu-west-1"),
            seen("cloudformation", "cloudformation", "eu-west-1"),
        ]
    );

    // The setting wins over both variables, for every client; the region setting wins over AWS_REGION.
    let settings = AwsSettings {
        region: Some("us-west-2".to_string()),
        endpoint_url: Some(setting.clone()),
        max_attempts: 2,
    };
    let cloud = AwsCloud::connect(&settings).await.expect("connect");
    call_every_service(&cloud).await;
    assert_eq!(
        log.lock().expect("log").drain(..).collect::<Vec<_>>(),
        [
            seen("setting", "sts", "us-west-2"),
            seen("setting", "organizations", "us-west-2"),
            seen("setting", "cloudformation", "us-west-2"),
        ]
    );

    assert_eq!(cloud.calls().total(), 3);
    let zero = AwsSettings {
        max_attempts: 0,
        ..settings
    };
    assert!(AwsCloud::connect(&zero).await.is_err());
}
