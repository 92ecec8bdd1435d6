//! A small "CloudFormation" for the local AWS: gives every resource of the template its
//! physical name, then creates the ones moto serves (queues, topics, tables, state machines).

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
            "AWS::Serverless::Function" | "AWS::Lambda::Function" => {
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
            "AWS::DynamoDB::Table" | "AWS::Serverless::SimpleTable" => {
                let name = given("TableName")?.unwrap_or(default_name);
                let arn = names.arn("dynamodb", &format!("table/{name}"));
                Physical {
                    reference: name,
                    attrs: [("Arn".to_owned(), arn)].into(),
                }
            }
            "AWS::Serverless::StateMachine" | "AWS::StepFunctions::StateMachine" => {
                let name = given("Name")?.or(given("StateMachineName")?).unwrap_or(default_name);
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
    let entries: Vec<(String, Value)> = t.resources().map(|(id, r)| (id.clone(), r.clone())).collect();
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
            "AWS::SNS::Topic" => {
                let name = physical.attrs.get("TopicName").cloned().unwrap_or_default();
                sns.create_topic()
                    .name(name)
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
            "AWS::Serverless::StateMachine" | "AWS::StepFunctions::StateMachine" => {
                let props = t.resolve(&r["Properties"], names)?;
                let definition = state_machine_definition(&props, repo).map_err(|e| create_err(id, e))?;
                let name = physical.attrs.get("Name").cloned().unwrap_or_default();
                sfn.create_state_machine()
                    .name(name)
                    .definition(definition)
                    .role_arn(format!("arn:aws:iam::{}:role/{}-{id}", names.account, names.stack))
                    .send()
                    .await
                    .map_err(|e| create_err(id, e.into_service_error()))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The ASL with `${Key}` placeholders filled from DefinitionSubstitutions.
pub fn state_machine_definition(props: &Value, repo: &Path) -> Result<String, String> {
    let mut text = match (
        props.get("DefinitionUri").and_then(Value::as_str),
        props.get("Definition"),
    ) {
        (Some(uri), _) => std::fs::read_to_string(repo.join(uri)).map_err(|e| format!("{uri}: {e}"))?,
        (None, Some(def)) => def.to_string(),
        (None, None) => return Err("neither DefinitionUri nor Definition".into()),
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
    req.send()
        .await
        .map(|_| ())
        .map_err(|e| e.into_service_error().to_string())
}
