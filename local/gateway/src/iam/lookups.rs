//! What IAM reads of the resources themselves before it decides: an EC2 resource's tags
//! (`aws:ResourceTag/*`), a queue's or topic's policy, a KMS key's ARN and key policy. Read from
//! moto in the resource's account (moto's `x-moto-account-id`), as the service would.

use crate::http::{full, xml_elements, xml_unescape, Body};
use bytes::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub struct Moto {
    endpoint: String,
    client: Client<HttpConnector, Body>,
}

impl Moto {
    pub fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        }
    }

    async fn send(
        &self,
        service: &str,
        region: &str,
        account: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> Result<(u16, String), String> {
        // moto reads the region (and the service) from the credential scope; it checks no signature.
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=bakery-local/20260101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        let mut req = hyper::Request::post(format!("{}/", self.endpoint))
            .header("Authorization", auth)
            .header("x-moto-account-id", account);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(full(body)).map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes: Bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    async fn query(
        &self,
        service: &str,
        region: &str,
        account: &str,
        params: &[(&str, &str)],
    ) -> Result<String, String> {
        let body = params
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    k,
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let (status, text) = self
            .send(
                service,
                region,
                account,
                &[("Content-Type", "application/x-www-form-urlencoded")],
                body,
            )
            .await?;
        if status == 200 {
            Ok(text)
        } else {
            Err(text)
        }
    }

    async fn json(
        &self,
        service: &str,
        target: &str,
        region: &str,
        account: &str,
        body: Value,
    ) -> Result<Value, String> {
        let (status, text) = self
            .send(
                service,
                region,
                account,
                &[("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", target)],
                body.to_string(),
            )
            .await?;
        if status == 200 {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            Err(text)
        }
    }

    /// An EC2 query-protocol call in `account`'s EC2 in `region`: the answer's XML, or the error's.
    pub async fn query_ec2(&self, region: &str, account: &str, params: &[(&str, &str)]) -> Result<String, String> {
        self.query("ec2", region, account, params).await
    }

    /// The accounts an image's launch permission names (DescribeImageAttribute launchPermission).
    pub async fn launch_permission_users(&self, region: &str, account: &str, image_id: &str) -> Vec<String> {
        let params = [
            ("Action", "DescribeImageAttribute"),
            ("Version", "2016-11-15"),
            ("ImageId", image_id),
            ("Attribute", "launchPermission"),
        ];
        let xml = self.query("ec2", region, account, &params).await.unwrap_or_default();
        xml_elements(&xml, "userId").into_iter().map(xml_unescape).collect()
    }

    /// An EC2 resource's tags (DescribeTags on its id).
    pub async fn ec2_tags(&self, region: &str, account: &str, id: &str) -> BTreeMap<String, String> {
        let xml = self
            .query(
                "ec2",
                region,
                account,
                &[
                    ("Action", "DescribeTags"),
                    ("Version", "2016-11-15"),
                    ("Filter.1.Name", "resource-id"),
                    ("Filter.1.Value.1", id),
                ],
            )
            .await
            .unwrap_or_default();
        let mut out = BTreeMap::new();
        for item in xml_elements(&xml, "item") {
            let one = |t: &str| xml_elements(item, t).first().map(|s| xml_unescape(s));
            if let Some(key) = one("key") {
                out.insert(key, one("value").unwrap_or_default());
            }
        }
        out
    }

    /// A queue's policy (GetQueueAttributes Policy), by its ARN.
    pub async fn queue_policy(&self, queue_arn: &str) -> Option<Value> {
        let parts: Vec<&str> = queue_arn.split(':').collect();
        let [_, _, _, region, account, name] = parts.as_slice() else {
            return None;
        };
        let url = self
            .json(
                "sqs",
                "AmazonSQS.GetQueueUrl",
                region,
                account,
                json!({"QueueName": name, "QueueOwnerAWSAccountId": account}),
            )
            .await
            .ok()?;
        let attrs = self
            .json(
                "sqs",
                "AmazonSQS.GetQueueAttributes",
                region,
                account,
                json!({"QueueUrl": url["QueueUrl"], "AttributeNames": ["Policy"]}),
            )
            .await
            .ok()?;
        serde_json::from_str(attrs.pointer("/Attributes/Policy")?.as_str()?).ok()
    }

    /// `account`'s own EventBridge rules on its default bus in `region` (made at run time, as an
    /// SOE account makes the rule that forwards its events): (rule ARN, pattern, targets as
    /// (ARN, role ARN)). Disabled rules and rules without a pattern are left out.
    pub async fn event_rules(
        &self,
        region: &str,
        account: &str,
    ) -> Vec<(String, Value, Vec<(String, Option<String>)>)> {
        let Ok(listed) = self
            .json("events", "AWSEvents.ListRules", region, account, json!({}))
            .await
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for rule in listed["Rules"].as_array().into_iter().flatten() {
            let (Some(name), Some(arn)) = (rule["Name"].as_str(), rule["Arn"].as_str()) else {
                continue;
            };
            let Some(Ok(pattern)) = rule["EventPattern"].as_str().map(serde_json::from_str::<Value>) else {
                continue;
            };
            if rule["State"].as_str().is_some_and(|s| s != "ENABLED") {
                continue;
            }
            let targets = self
                .json(
                    "events",
                    "AWSEvents.ListTargetsByRule",
                    region,
                    account,
                    json!({"Rule": name}),
                )
                .await
                .unwrap_or_default();
            let targets = targets["Targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| Some((t["Arn"].as_str()?.to_owned(), t["RoleArn"].as_str().map(str::to_owned))))
                .collect();
            out.push((arn.to_owned(), pattern, targets));
        }
        out
    }

    /// Sends `body` to a queue in its own account (what SNS does for a subscription of another
    /// account, which moto does not deliver itself).
    pub async fn send_to_queue(&self, queue_arn: &str, body: &str) -> Result<(), String> {
        let parts: Vec<&str> = queue_arn.split(':').collect();
        let [_, _, _, region, account, name] = parts.as_slice() else {
            return Err(format!("{queue_arn} is not a queue ARN"));
        };
        let url = format!("https://sqs.{region}.amazonaws.com/{account}/{name}");
        self.query(
            "sqs",
            region,
            account,
            &[("Action", "SendMessage"), ("QueueUrl", &url), ("MessageBody", body)],
        )
        .await
        .map(|_| ())
    }

    /// A topic's policy (GetTopicAttributes Policy).
    pub async fn topic_policy(&self, topic_arn: &str) -> Option<Value> {
        serde_json::from_str(&self.topic_attribute(topic_arn, "Policy").await?).ok()
    }

    /// The KMS key a topic is encrypted with (GetTopicAttributes KmsMasterKeyId).
    pub async fn topic_key(&self, topic_arn: &str) -> Option<String> {
        self.topic_attribute(topic_arn, "KmsMasterKeyId")
            .await
            .filter(|k| !k.is_empty())
    }

    async fn topic_attribute(&self, topic_arn: &str, name: &str) -> Option<String> {
        let parts: Vec<&str> = topic_arn.split(':').collect();
        let [_, _, _, region, account, _] = parts.as_slice() else {
            return None;
        };
        let xml = self
            .query(
                "sns",
                region,
                account,
                &[("Action", "GetTopicAttributes"), ("TopicArn", topic_arn)],
            )
            .await
            .ok()?;
        xml_elements(&xml, "entry").into_iter().find_map(|entry| {
            let key = xml_elements(entry, "key").first().map(|s| xml_unescape(s))?;
            let value = xml_elements(entry, "value").first().map(|s| xml_unescape(s))?;
            (key == name).then_some(value)
        })
    }

    /// A new KMS key with its key policy: (key id, key ARN).
    pub async fn create_kms_key(
        &self,
        region: &str,
        account: &str,
        description: &str,
        policy: Option<&Value>,
    ) -> Result<(String, String), String> {
        let mut request = json!({"Description": description});
        if let Some(p) = policy {
            request["Policy"] = json!(p.to_string());
        }
        let key = self
            .json("kms", "TrentService.CreateKey", region, account, request)
            .await?;
        let field = |name: &str| {
            key.pointer(&format!("/KeyMetadata/{name}"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("CreateKey returned no {name}"))
        };
        Ok((field("KeyId")?, field("Arn")?))
    }

    /// An alias (`alias/<name>`) for a key.
    pub async fn create_kms_alias(&self, region: &str, account: &str, alias: &str, key: &str) -> Result<(), String> {
        self.json(
            "kms",
            "TrentService.CreateAlias",
            region,
            account,
            json!({"AliasName": alias, "TargetKeyId": key}),
        )
        .await
        .map(|_| ())
    }

    /// A KMS key with `alias` (`alias/<name>`) in `region`, made if there is none (with KMS's
    /// default key policy); its key ARN.
    pub async fn ensure_kms_alias(&self, region: &str, account: &str, alias: &str) -> Result<String, String> {
        if let Some((arn, _)) = self.kms_key(region, account, alias).await {
            return Ok(arn);
        }
        let (_, arn) = self.create_kms_key(region, account, alias, None).await?;
        self.create_kms_alias(region, account, alias, &arn).await?;
        Ok(arn)
    }

    /// A KMS key's ARN and key policy, from its id, alias or ARN in `region`.
    pub async fn kms_key(&self, region: &str, account: &str, key: &str) -> Option<(String, Value)> {
        let described = self
            .json(
                "kms",
                "TrentService.DescribeKey",
                region,
                account,
                json!({"KeyId": key}),
            )
            .await
            .ok()?;
        let arn = described.pointer("/KeyMetadata/Arn")?.as_str()?.to_owned();
        let owner = arn.split(':').nth(4).unwrap_or(account).to_owned();
        let policy = self
            .json(
                "kms",
                "TrentService.GetKeyPolicy",
                region,
                &owner,
                json!({"KeyId": arn, "PolicyName": "default"}),
            )
            .await
            .ok()?;
        let policy = serde_json::from_str(policy["Policy"].as_str()?).ok()?;
        Some((arn, policy))
    }
}
