//! A small "CloudFormation" for the local AWS: gives every resource of the translated template
//! its physical name, then creates the ones moto serves (queues, topics, tables, state machines)
//! and applies their resource policies (queue and topic policies).

use crate::template::{Names, Physical, Template, TemplateError};
use aws_config::SdkConfig;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{resource}: {message}")]
    Create { resource: String, message: String },
}

fn create_err(resource: &str, e: impl std::fmt::Display) -> DeployError {
    DeployError::Create {
        resource: resource.to_owned(),
        message: e.to_string(),
    }
}

/// Pass 1: the physical names, known before anything exists, so that every `Ref` and `GetAtt`
/// in environments and substitutions resolves whatever the creation order.
pub fn name_resources(t: &Template, names: &mut Names) -> Result<(), TemplateError> {
    let entries: Vec<(String, Value)> = t.resources().map(|(id, r)| (id.clone(), r.clone())).collect();
    for (id, r) in entries {
        let props = &r["Properties"];
        let given = |key: &str| -> Result<Option<String>, TemplateError> {
            props
                .get(key)
                .map(|v| t.resolve(v, names).map(|v| v.as_str().unwrap_or_default().to_owned()))
                .transpose()
        };
        let default_name = format!("{}-{id}", names.stack);
        let physical = match r["Type"].as_str().unwrap_or_default() {
            "AWS::Lambda::Function" => {
                let name = given("FunctionName")?.unwrap_or(default_name);
                let arn = names.arn("lambda", &format!("function:{name}"));
                Physical {
                    reference: name,
                    attrs: [("Arn".to_owned(), arn)].into(),
                }
            }
            "AWS::SQS::Queue" => {
                let name = given("QueueName")?.unwrap_or(default_name);
                let arn = names.arn("sqs", &name);
                // The URL is moto's answer to CreateQueue; this placeholder is replaced then.
                Physical {
                    reference: name.clone(),
                    attrs: [("Arn".to_owned(), arn), ("QueueName".to_owned(), name)].into(),
                }
            }
            "AWS::SNS::Topic" => {
                let name = given("TopicName")?.unwrap_or(default_name);
                let arn = names.arn("sns", &name);
                Physical {
                    reference: arn.clone(),
                    attrs: [("TopicArn".to_owned(), arn), ("TopicName".to_owned(), name)].into(),
                }
            }
            "AWS::IAM::Role" => {
                // CloudFormation's own names are `<stack>-<LogicalId>-<random>`, at most 64 characters.
                let name = given("RoleName")?.unwrap_or_else(|| default_name.chars().take(64).collect());
                let path = given("Path")?.unwrap_or_else(|| "/".into());
                let arn = format!("arn:aws:iam::{}:role{path}{name}", names.account);
                Physical {
                    reference: name,
                    attrs: [("Arn".to_owned(), arn)].into(),
                }
            }
            "AWS::Events::Rule" => {
                let name = given("Name")?.unwrap_or(default_name);
                let arn = names.arn("events", &format!("rule/{name}"));
                Physical {
                    reference: name,
                    attrs: [("Arn".to_owned(), arn)].into(),
                }
            }
            "AWS::Scheduler::Schedule" => {
                let name = given("Name")?.unwrap_or(default_name);
                let group = given("GroupName")?.unwrap_or_else(|| "default".into());
                let arn = names.arn("scheduler", &format!("schedule/{group}/{name}"));
                Physical {
                    reference: name,
                    attrs: [("Arn".to_owned(), arn)].into(),
                }
            }
            "AWS::Logs::LogGroup" => {
                let name = given("LogGroupName")?.unwrap_or(default_name);
                let arn = names.arn("logs", &format!("log-group:{name}:*"));
                Physical {
                    reference: name,
                    attrs: [("Arn".to_owned(), arn)].into(),
                }
            }
            // KMS makes the key's id: moto's answer to CreateKey replaces this placeholder (keys
            // are created first, so the topics and policies that name them see the real one).
            "AWS::KMS::Key" => Physical {
                reference: format!("{}-{id}", names.stack),
                attrs: [("Arn".to_owned(), names.arn("kms", &format!("key/{}-{id}", names.stack)))].into(),
            },
            "AWS::KMS::Alias" => Physical {
                reference: given("AliasName")?.unwrap_or(default_name),
                attrs: Default::default(),
            },
            "AWS::DynamoDB::Table" => {
                let name = given("TableName")?.unwrap_or(default_name);
                let arn = names.arn("dynamodb", &format!("table/{name}"));
                Physical {
                    reference: name,
                    attrs: [("Arn".to_owned(), arn)].into(),
                }
            }
            "AWS::StepFunctions::StateMachine" => {
                let name = given("StateMachineName")?.unwrap_or(default_name);
                let arn = names.arn("states", &format!("stateMachine:{name}"));
                Physical {
                    reference: arn.clone(),
                    attrs: [("Arn".to_owned(), arn), ("Name".to_owned(), name)].into(),
                }
            }
            _ => Physical {
                reference: id.clone(),
                attrs: Default::default(),
            },
        };
        names.resources.insert(id, physical);
    }
    Ok(())
}

/// Pass 2: creates in moto what moto serves. `repo` is where `DefinitionUri` paths start.
pub async fn create_resources(
    t: &Template,
    names: &mut Names,
    sdk: &SdkConfig,
    repo: &Path,
) -> Result<(), DeployError> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let sns = aws_sdk_sns::Client::new(sdk);
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let kms = crate::iam::lookups::Moto::new(sdk.endpoint_url().unwrap_or_default());
    let mut entries: Vec<(String, Value)> = t.resources().map(|(id, r)| (id.clone(), r.clone())).collect();
    // Keys before what they encrypt, aliases after their keys.
    let rank = |r: &Value| match r["Type"].as_str() {
        Some("AWS::KMS::Key") => 0,
        Some("AWS::KMS::Alias") => 1,
        _ => 2,
    };
    entries.sort_by_key(|(_, r)| rank(r));
    for (id, r) in &entries {
        if !t.condition_holds(r, names)? {
            continue;
        }
        let physical = names.resources.get(id).cloned().unwrap_or_default();
        match r["Type"].as_str().unwrap_or_default() {
            "AWS::SQS::Queue" => {
                let name = physical.attrs.get("QueueName").cloned().unwrap_or_default();
                let out = sqs
                    .create_queue()
                    .queue_name(&name)
                    .send()
                    .await
                    .map_err(|e| create_err(id, e.into_service_error()))?;
                if let (Some(url), Some(p)) = (out.queue_url, names.resources.get_mut(id)) {
                    p.reference = url.clone();
                    p.attrs.insert("QueueUrl".into(), url);
                }
            }
            "AWS::KMS::Key" => {
                let props = t.resolve(&r["Properties"], names)?;
                let (key_id, arn) = kms
                    .create_kms_key(
                        &names.region,
                        &names.account,
                        props["Description"].as_str().unwrap_or_default(),
                        Some(&props["KeyPolicy"]),
                    )
                    .await
                    .map_err(|e| create_err(id, e))?;
                if let Some(p) = names.resources.get_mut(id) {
                    p.reference = key_id.clone();
                    p.attrs.insert("Arn".into(), arn);
                    p.attrs.insert("KeyId".into(), key_id);
                }
            }
            "AWS::KMS::Alias" => {
                let props = t.resolve(&r["Properties"], names)?;
                kms.create_kms_alias(
                    &names.region,
                    &names.account,
                    &physical.reference,
                    props["TargetKeyId"].as_str().unwrap_or_default(),
                )
                .await
                .map_err(|e| create_err(id, e))?;
            }
            "AWS::SNS::Topic" => {
                let name = physical.attrs.get("TopicName").cloned().unwrap_or_default();
                let props = t.resolve(&r["Properties"], names)?;
                let mut create = sns.create_topic().name(name);
                if let Some(key) = props["KmsMasterKeyId"].as_str() {
                    create = create.attributes("KmsMasterKeyId", key);
                }
                create
                    .send()
                    .await
                    .map_err(|e| create_err(id, e.into_service_error()))?;
            }
            "AWS::DynamoDB::Table" => {
                let props = t.resolve(&r["Properties"], names)?;
                create_table(&ddb, &physical.reference, &props)
                    .await
                    .map_err(|e| create_err(id, e))?;
            }
            "AWS::StepFunctions::StateMachine" => {
                let props = t.resolve(&r["Properties"], names)?;
                let definition = state_machine_definition(&props, repo).map_err(|e| create_err(id, e))?;
                let name = physical.attrs.get("Name").cloned().unwrap_or_default();
                sfn.create_state_machine()
                    .name(name)
                    .definition(definition)
                    .role_arn(props["RoleArn"].as_str().unwrap_or_default())
                    .send()
                    .await
                    .map_err(|e| create_err(id, e.into_service_error()))?;
            }
            _ => {}
        }
    }
    // Resource policies, once their queues and topics exist.
    for (queue_url, policy) in t.resource_policies("AWS::SQS::QueuePolicy", names)? {
        sqs.set_queue_attributes()
            .queue_url(&queue_url)
            .attributes(aws_sdk_sqs::types::QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .map_err(|e| create_err(&queue_url, e.into_service_error()))?;
    }
    for (topic_arn, policy) in t.resource_policies("AWS::SNS::TopicPolicy", names)? {
        sns.set_topic_attributes()
            .topic_arn(&topic_arn)
            .attribute_name("Policy")
            .attribute_value(policy.to_string())
            .send()
            .await
            .map_err(|e| create_err(&topic_arn, e.into_service_error()))?;
    }
    Ok(())
}

/// The ASL with `${Key}` placeholders filled from DefinitionSubstitutions. A local
/// DefinitionUri comes out of SAM's transform as `DefinitionS3Location` in the bucket `local`
/// (local/tools/sam-translate.py): its key is the path in the repository.
pub fn state_machine_definition(props: &Value, repo: &Path) -> Result<String, String> {
    let local_key = match props.pointer("/DefinitionS3Location/Bucket").and_then(Value::as_str) {
        Some("local") => props.pointer("/DefinitionS3Location/Key").and_then(Value::as_str),
        _ => None,
    };
    let mut text = match (local_key, props.get("DefinitionString"), props.get("Definition")) {
        (Some(path), _, _) => std::fs::read_to_string(repo.join(path)).map_err(|e| format!("{path}: {e}"))?,
        (None, Some(Value::String(def)), _) => def.clone(),
        (None, _, Some(def)) => def.to_string(),
        _ => return Err("no local DefinitionS3Location, DefinitionString or Definition".into()),
    };
    for (key, value) in props
        .get("DefinitionSubstitutions")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        text = text.replace(&format!("${{{key}}}"), &value);
    }
    Ok(text)
}

async fn create_table(ddb: &aws_sdk_dynamodb::Client, name: &str, props: &Value) -> Result<(), String> {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    let mut req = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for a in props["AttributeDefinitions"].as_array().into_iter().flatten() {
        let def = AttributeDefinition::builder()
            .attribute_name(a["AttributeName"].as_str().unwrap_or_default())
            .attribute_type(ScalarAttributeType::from(a["AttributeType"].as_str().unwrap_or("S")))
            .build()
            .map_err(|e| e.to_string())?;
        req = req.attribute_definitions(def);
    }
    for k in props["KeySchema"].as_array().into_iter().flatten() {
        let key = KeySchemaElement::builder()
            .attribute_name(k["AttributeName"].as_str().unwrap_or_default())
            .key_type(KeyType::from(k["KeyType"].as_str().unwrap_or("HASH")))
            .build()
            .map_err(|e| e.to_string())?;
        req = req.key_schema(key);
    }
    for g in props["GlobalSecondaryIndexes"].as_array().into_iter().flatten() {
        req = req.global_secondary_indexes(global_index(g)?);
    }
    req.send()
        .await
        .map(|_| ())
        .map_err(|e| e.into_service_error().to_string())
}

/// One `GlobalSecondaryIndexes` entry of an `AWS::DynamoDB::Table`.
fn global_index(g: &Value) -> Result<aws_sdk_dynamodb::types::GlobalSecondaryIndex, String> {
    use aws_sdk_dynamodb::types::{GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType};
    let mut index = GlobalSecondaryIndex::builder().index_name(g["IndexName"].as_str().unwrap_or_default());
    for k in g["KeySchema"].as_array().into_iter().flatten() {
        index = index.key_schema(
            KeySchemaElement::builder()
                .attribute_name(k["AttributeName"].as_str().unwrap_or_default())
                .key_type(KeyType::from(k["KeyType"].as_str().unwrap_or("HASH")))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    let p = &g["Projection"];
    let mut projection =
        Projection::builder().projection_type(ProjectionType::from(p["ProjectionType"].as_str().unwrap_or("ALL")));
    for a in p["NonKeyAttributes"].as_array().into_iter().flatten() {
        projection = projection.non_key_attributes(a.as_str().unwrap_or_default());
    }
    index.projection(projection.build()).build().map_err(|e| e.to_string())
}
