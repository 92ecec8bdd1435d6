//! What IAM authorizes for a request: its action, the ARN of each resource the action acts on
//! (in the Reference's format, filled from the request), the condition keys the request sets,
//! and the dependent actions the Reference lists that this request needs. One arm per operation
//! Bakery's functions and the services acting for them call; an operation with no arm is
//! authorized against "*" only when the Reference gives its action no resource type.

use super::data::ActionData;
use serde_json::Value;
use std::collections::BTreeMap;

/// One request as the gateway received it.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// The SigV4 signing name (`ec2`, `ssm`, `states`, `imagebuilder`, ...).
    pub service: String,
    pub operation: String,
    pub region: String,
    /// The caller's account: resources named without an account are the caller's.
    pub account: String,
    pub method: String,
    pub path: String,
    /// The URL's query, decoded.
    pub query: BTreeMap<String, String>,
    /// The query protocol's parameters (form body or URL).
    pub form: BTreeMap<String, String>,
    /// The JSON body (awsJson and restJson protocols), or Null.
    pub json: Value,
}

/// What the authorizer must read before it can evaluate a need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    None,
    /// The tags of an EC2 resource, for `aws:ResourceTag/*`.
    Ec2Tags {
        region: String,
        id: String,
    },
    /// The KMS key behind an id, alias or ARN in `region` (its ARN and key policy).
    KmsKey {
        region: String,
        key: String,
    },
    /// The KMS key a topic is encrypted with (its `KmsMasterKeyId`); none, nothing to decide.
    TopicKey {
        topic_arn: String,
    },
}

/// One authorization IAM makes: `action` on `resource`.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    pub action: String,
    /// An ARN, or `*` for an action without a resource type.
    pub resource: String,
    /// The account that owns the resource, when it is not in its ARN (EC2 images, say).
    pub owner: Option<String>,
    pub context: BTreeMap<String, Vec<String>>,
    pub lookup: Lookup,
    /// The action this one is a dependent action of.
    pub because_of: Option<String>,
}

impl Need {
    fn new(action: &str, resource: impl Into<String>) -> Self {
        Self {
            action: action.to_owned(),
            resource: resource.into(),
            owner: None,
            context: BTreeMap::new(),
            lookup: Lookup::None,
            because_of: None,
        }
    }

    fn with(mut self, key: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.context
            .insert(key.to_owned(), values.into_iter().map(Into::into).collect());
        self
    }

    fn looking_up(mut self, lookup: Lookup) -> Self {
        self.lookup = lookup;
        self
    }

    fn dependent_of(mut self, action: &str) -> Self {
        self.because_of = Some(action.to_owned());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The local AWS does not know which resources this action acts on.
    #[error("the local AWS cannot authorize {action}: it does not know the resources of {operation} (add an arm in local/gateway/src/iam/requests.rs)")]
    Unmapped { action: String, operation: String },
    /// The request lacks what IAM needs (the service would refuse it anyway).
    #[error("{0}")]
    Invalid(String),
}

/// The IAM action of an operation: the same name, but for a few the Reference names otherwise.
pub fn action_of(service: &str, operation: &str) -> String {
    let name = match (service, operation) {
        ("lambda", "Invoke" | "InvokeAsync") => "InvokeFunction",
        ("sqs", "SendMessageBatch") => "SendMessage",
        ("sqs", "DeleteMessageBatch") => "DeleteMessage",
        ("sqs", "ChangeMessageVisibilityBatch") => "ChangeMessageVisibility",
        ("sns", "PublishBatch") => "Publish",
        ("ssm", "DeleteParameters") => "DeleteParameter",
        _ => operation,
    };
    format!("{service}:{name}")
}

/// Every authorization the call needs, its dependent actions included.
pub fn needs(call: &Call, data: &ActionData) -> Result<Vec<Need>, MapError> {
    let action = action_of(&call.service, &call.operation);
    let m = Mapper {
        call,
        data,
        action: &action,
    };
    let out = match call.service.as_str() {
        "ec2" => m.ec2()?,
        "ssm" => m.ssm()?,
        "states" => m.states()?,
        "dynamodb" => m.dynamodb()?,
        "sns" => m.sns()?,
        "sqs" => m.sqs()?,
        "lambda" => m.lambda()?,
        "imagebuilder" => m.imagebuilder()?,
        _ => None,
    };
    match out {
        Some(needs) => Ok(needs),
        None if data.action(&action).is_some_and(|a| a.wildcard_only()) => Ok(vec![Need::new(&action, "*")]),
        None => Err(MapError::Unmapped {
            action,
            operation: format!("{}:{}", call.service, call.operation),
        }),
    }
}

/// Dependent actions the Reference lists for an action mapped here that this local AWS does not
/// check, each with the reason it never applies to Bakery's calls. Every other dependent action
/// of a mapped action is checked when the request needs it (a test holds both lists to the data).
pub const NOT_CHECKED: &[(&str, &str, &str)] = &[
    (
        "imagebuilder:UpdateImagePipeline",
        "ecr:BatchGetRepositoryScanningConfiguration",
        "container pipelines only; Bakery bakes AMI pipelines",
    ),
    (
        "imagebuilder:UpdateImagePipeline",
        "ecr:DescribeRepositories",
        "container pipelines only",
    ),
    (
        "imagebuilder:UpdateImagePipeline",
        "imagebuilder:GetContainerRecipe",
        "container pipelines only",
    ),
    (
        "imagebuilder:UpdateImagePipeline",
        "iam:CreateServiceLinkedRole",
        "only while the account has no Image Builder service-linked role, which creating the pipeline made",
    ),
    (
        "imagebuilder:StartImagePipelineExecution",
        "iam:CreateServiceLinkedRole",
        "only while the account has no Image Builder service-linked role, which creating the pipeline made",
    ),
    (
        "imagebuilder:GetComponent",
        "kms:Decrypt",
        "only for a component encrypted with a customer key; Bakery reads no component itself",
    ),
    (
        "imagebuilder:GetWorkflow",
        "kms:Decrypt",
        "only for a workflow encrypted with a customer key; Bakery reads no workflow itself",
    ),
];

struct Mapper<'a> {
    call: &'a Call,
    data: &'a ActionData,
    action: &'a str,
}

type Mapped = Result<Option<Vec<Need>>, MapError>;

fn invalid(what: String) -> MapError {
    MapError::Invalid(what)
}

impl Mapper<'_> {
    fn arn(&self, prefix: &str, kind: &str, vars: &[(&str, &str)]) -> Result<String, MapError> {
        self.data.arn(prefix, kind, vars).map_err(invalid)
    }

    fn form(&self, key: &str) -> Result<&str, MapError> {
        self.call
            .form
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| invalid(format!("{} needs {key}", self.call.operation)))
    }

    /// `Prefix.1`, `Prefix.2`, ... of the query protocol.
    fn form_list(&self, prefix: &str) -> Vec<&str> {
        let mut items: Vec<(u32, &str)> = self
            .call
            .form
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()?, v.as_str())))
            .collect();
        items.sort_unstable();
        items.into_iter().map(|(_, v)| v).collect()
    }

    fn json_str(&self, key: &str) -> Result<&str, MapError> {
        self.call.json[key]
            .as_str()
            .ok_or_else(|| invalid(format!("{} needs {key}", self.call.operation)))
    }

    fn ec2_arn(&self, region: &str, id: &str) -> Result<(String, Lookup), MapError> {
        let (kind, var) = match id.split('-').next() {
            Some("ami") => ("image", "ImageId"),
            Some("snap") => ("snapshot", "SnapshotId"),
            _ => {
                return Err(MapError::Unmapped {
                    action: self.action.to_owned(),
                    operation: format!("ec2:{} on {id}", self.call.operation),
                })
            }
        };
        let arn = self.arn("ec2", kind, &[("Region", region), (var, id)])?;
        let lookup = if id.ends_with('*') {
            Lookup::None
        } else {
            Lookup::Ec2Tags {
                region: region.to_owned(),
                id: id.to_owned(),
            }
        };
        Ok((arn, lookup))
    }

    /// The request's tags as IAM sees them: `aws:RequestTag/<key>` and `aws:TagKeys`.
    fn request_tags(need: Need, tags: &[(String, String)]) -> Need {
        if tags.is_empty() {
            return need;
        }
        let mut need = need.with("aws:TagKeys", tags.iter().map(|(k, _)| k.clone()));
        for (k, v) in tags {
            need = need.with(&format!("aws:RequestTag/{k}"), [v.clone()]);
        }
        need
    }

    /// `Tag.N.Key`/`Tag.N.Value` (CreateTags) or `TagSpecification.N.Tag.M.*`.
    fn form_tags(&self, prefix: &str) -> Vec<(String, String)> {
        let mut keys: Vec<(&String, &String)> = self
            .call
            .form
            .iter()
            .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(".Key"))
            .collect();
        keys.sort();
        keys.into_iter()
            .map(|(k, key)| {
                let value_key = format!("{}.Value", k.trim_end_matches(".Key"));
                (key.clone(), self.call.form.get(&value_key).cloned().unwrap_or_default())
            })
            .collect()
    }

    fn ec2(&self) -> Mapped {
        let c = self.call;
        let region = c.region.as_str();
        let one = |id: &str| -> Result<Vec<Need>, MapError> {
            let (arn, lookup) = self.ec2_arn(region, id)?;
            Ok(vec![Need::new(self.action, arn).looking_up(lookup)])
        };
        Ok(Some(match c.operation.as_str() {
            "EnableImageDeprecation"
            | "DisableImageDeprecation"
            | "DeregisterImage"
            | "EnableImage"
            | "DisableImage"
            | "ModifyImageAttribute"
            | "DescribeImageAttribute"
            | "ResetImageAttribute" => one(self.form("ImageId")?)?,
            "DeleteSnapshot" | "ModifySnapshotAttribute" | "DescribeSnapshotAttribute" | "ResetSnapshotAttribute" => {
                one(self.form("SnapshotId")?)?
            }
            "CreateTags" | "DeleteTags" => {
                let tags = self.form_tags("Tag.");
                let mut out = Vec::new();
                for id in self.form_list("ResourceId") {
                    let (arn, lookup) = self.ec2_arn(region, id)?;
                    out.push(Self::request_tags(
                        Need::new(self.action, arn).looking_up(lookup),
                        &tags,
                    ));
                }
                out
            }
            "CopyImage" => {
                let source_region = self.form("SourceRegion")?;
                let (source, lookup) = self.ec2_arn(source_region, self.form("SourceImageId")?)?;
                let target = self.arn("ec2", "image", &[("Region", region), ("ImageId", "*")])?;
                let snapshots = self.arn("ec2", "snapshot", &[("Region", region), ("SnapshotId", "*")])?;
                let mut out = vec![
                    Need::new(self.action, source).looking_up(lookup),
                    Need::new(self.action, &target),
                    Need::new(self.action, &snapshots),
                ];
                // Tags at creation need ec2:CreateTags on what is created, with ec2:CreateAction.
                let tags = self.form_tags("TagSpecification.");
                if !tags.is_empty() {
                    for arn in [&target, &snapshots] {
                        let tag = Need::new("ec2:CreateTags", arn)
                            .with("ec2:CreateAction", ["CopyImage"])
                            .dependent_of(self.action);
                        out.push(Self::request_tags(tag, &tags));
                    }
                }
                if c.form.get("Encrypted").is_some_and(|v| v == "true") || c.form.contains_key("KmsKeyId") {
                    let key = c.form.get("KmsKeyId").map_or("alias/aws/ebs", String::as_str);
                    out.extend(ebs_kms_needs(region, &c.account, key, self.action));
                }
                out
            }
            _ => return Ok(None),
        }))
    }

    fn ssm_parameter(&self, name: &str) -> Result<String, MapError> {
        if name.starts_with("arn:") {
            return Ok(name.to_owned());
        }
        let c = self.call;
        self.arn(
            "ssm",
            "parameter",
            &[
                ("Region", &c.region),
                ("Account", &c.account),
                ("ParameterNameWithoutLeadingSlash", name.trim_start_matches('/')),
            ],
        )
    }

    fn ssm(&self) -> Mapped {
        let c = self.call;
        let names: Vec<&str> = match c.operation.as_str() {
            "GetParameter" | "PutParameter" | "DeleteParameter" | "GetParameterHistory" | "LabelParameterVersion" => {
                vec![self.json_str("Name")?]
            }
            "GetParameters" | "DeleteParameters" => c.json["Names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect(),
            "GetParametersByPath" => vec![self.json_str("Path")?],
            "AddTagsToResource" | "RemoveTagsFromResource" | "ListTagsForResource"
                if c.json["ResourceType"] == "Parameter" =>
            {
                vec![self.json_str("ResourceId")?]
            }
            _ => return Ok(None),
        };
        let mut out = Vec::new();
        for name in names {
            let mut need = Need::new(self.action, self.ssm_parameter(name)?);
            match c.operation.as_str() {
                "GetParametersByPath" => {
                    let recursive = c.json["Recursive"].as_bool().unwrap_or(false);
                    need = need.with("ssm:Recursive", [if recursive { "Recursive" } else { "OneLevel" }]);
                }
                "PutParameter" => {
                    let overwrite = c.json["Overwrite"].as_bool().unwrap_or(false);
                    need = need.with("ssm:Overwrite", [overwrite.to_string()]);
                    let tags = json_tags(&c.json["Tags"], "Key", "Value");
                    need = Self::request_tags(need, &tags);
                }
                _ => {}
            }
            out.push(need);
        }
        Ok(Some(out))
    }

    fn states(&self) -> Mapped {
        let key = match self.call.operation.as_str() {
            "StartExecution"
            | "StartSyncExecution"
            | "DescribeStateMachine"
            | "ListExecutions"
            | "UpdateStateMachine"
            | "DeleteStateMachine" => "stateMachineArn",
            "DescribeExecution" | "StopExecution" | "GetExecutionHistory" | "RedriveExecution" => "executionArn",
            _ => return Ok(None),
        };
        Ok(Some(vec![Need::new(self.action, self.json_str(key)?)]))
    }

    fn dynamodb_table(&self, name: &str) -> Result<String, MapError> {
        if name.starts_with("arn:") {
            return Ok(name.to_owned());
        }
        let c = self.call;
        self.arn(
            "dynamodb",
            "table",
            &[("Region", &c.region), ("Account", &c.account), ("TableName", name)],
        )
    }

    fn dynamodb(&self) -> Mapped {
        let c = self.call;
        Ok(Some(match c.operation.as_str() {
            "GetItem" | "PutItem" | "UpdateItem" | "DeleteItem" | "Scan" | "DescribeTable" => {
                vec![Need::new(
                    self.action,
                    self.dynamodb_table(self.json_str("TableName")?)?,
                )]
            }
            "Query" => {
                let table = self.dynamodb_table(self.json_str("TableName")?)?;
                let resource = match c.json["IndexName"].as_str() {
                    Some(index) => format!("{table}/index/{index}"),
                    None => table,
                };
                vec![Need::new(self.action, resource)]
            }
            "BatchGetItem" | "BatchWriteItem" => {
                let mut out = Vec::new();
                for table in c.json["RequestItems"].as_object().into_iter().flatten().map(|(k, _)| k) {
                    out.push(Need::new(self.action, self.dynamodb_table(table)?));
                }
                out
            }
            _ => return Ok(None),
        }))
    }

    fn sns(&self) -> Mapped {
        let c = self.call;
        let topic = match c.operation.as_str() {
            "Publish" => c
                .form
                .get("TopicArn")
                .or_else(|| c.form.get("TargetArn"))
                .cloned()
                .ok_or_else(|| invalid("Publish needs TopicArn or TargetArn".into()))?,
            "PublishBatch"
            | "Subscribe"
            | "GetTopicAttributes"
            | "SetTopicAttributes"
            | "DeleteTopic"
            | "ListSubscriptionsByTopic"
            | "AddPermission"
            | "RemovePermission" => self.form("TopicArn")?.to_owned(),
            "CreateTopic" => self.arn(
                "sns",
                "topic",
                &[
                    ("Region", &c.region),
                    ("Account", &c.account),
                    ("TopicName", self.form("Name")?),
                ],
            )?,
            _ => return Ok(None),
        };
        let mut need = Need::new(self.action, &topic);
        if c.operation == "Subscribe" {
            need = need
                .with("sns:Protocol", [self.form("Protocol")?])
                .with("sns:Endpoint", [c.form.get("Endpoint").cloned().unwrap_or_default()]);
        }
        let mut needs = vec![need];
        // A publisher to an encrypted topic needs the topic's key: SNS makes a data key and
        // reads it back with the publisher's rights (SNS server-side encryption's documented
        // permissions).
        if self.action == "sns:Publish" {
            needs.extend(["kms:GenerateDataKey", "kms:Decrypt"].into_iter().map(|kms| {
                Need::new(kms, "")
                    .with("kms:ViaService", [format!("sns.{}.amazonaws.com", c.region)])
                    .with("aws:ViaAWSService", ["true"])
                    .looking_up(Lookup::TopicKey {
                        topic_arn: topic.clone(),
                    })
                    .dependent_of("sns:Publish")
            }));
        }
        Ok(Some(needs))
    }

    fn sqs(&self) -> Mapped {
        let c = self.call;
        let queue = match c.operation.as_str() {
            "GetQueueUrl" => {
                let owner = c.json["QueueOwnerAWSAccountId"].as_str().unwrap_or(&c.account);
                self.arn(
                    "sqs",
                    "queue",
                    &[
                        ("Region", &c.region),
                        ("Account", owner),
                        ("QueueName", self.json_str("QueueName")?),
                    ],
                )?
            }
            "CreateQueue" => self.arn(
                "sqs",
                "queue",
                &[
                    ("Region", &c.region),
                    ("Account", &c.account),
                    ("QueueName", self.json_str("QueueName")?),
                ],
            )?,
            "SendMessage"
            | "SendMessageBatch"
            | "ReceiveMessage"
            | "DeleteMessage"
            | "DeleteMessageBatch"
            | "ChangeMessageVisibility"
            | "ChangeMessageVisibilityBatch"
            | "GetQueueAttributes"
            | "SetQueueAttributes"
            | "PurgeQueue"
            | "DeleteQueue" => queue_arn(self.json_str("QueueUrl")?, &c.region)
                .ok_or_else(|| invalid(format!("{}: not a queue URL", c.operation)))?,
            _ => return Ok(None),
        };
        Ok(Some(vec![Need::new(self.action, queue)]))
    }

    fn lambda(&self) -> Mapped {
        let c = self.call;
        if c.operation != "Invoke" {
            return Ok(None);
        }
        let raw = c
            .path
            .trim_start_matches("/2015-03-31/functions/")
            .trim_end_matches("/invocations");
        let name = percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned();
        Ok(Some(vec![Need::new(
            self.action,
            function_arn(&name, &c.region, &c.account),
        )]))
    }

    fn imagebuilder(&self) -> Mapped {
        let c = self.call;
        let q = |k: &str| {
            c.query
                .get(k)
                .map(String::as_str)
                .ok_or_else(|| invalid(format!("{} needs {k}", c.operation)))
        };
        let action = self.action;
        Ok(Some(match c.operation.as_str() {
            "GetImage" => vec![Need::new(action, q("imageBuildVersionArn")?)],
            "GetImagePipeline" => vec![Need::new(action, q("imagePipelineArn")?)],
            "GetImageRecipe" => vec![Need::new(action, q("imageRecipeArn")?)],
            "GetComponent" => vec![Need::new(action, q("componentBuildVersionArn")?)],
            "GetInfrastructureConfiguration" => vec![Need::new(action, q("infrastructureConfigurationArn")?)],
            "GetDistributionConfiguration" => vec![Need::new(action, q("distributionConfigurationArn")?)],
            "GetWorkflow" => vec![Need::new(action, q("workflowBuildVersionArn")?)],
            "TagResource" | "UntagResource" | "ListTagsForResource" => {
                let arn = c.path.trim_start_matches("/tags/");
                let arn = percent_encoding::percent_decode_str(arn)
                    .decode_utf8_lossy()
                    .into_owned();
                let tags = json_object_tags(&c.json["tags"]);
                vec![Self::request_tags(Need::new(action, arn), &tags)]
            }
            "CreateImageRecipe" => self.create_image_recipe()?,
            "UpdateImagePipeline" => self.update_image_pipeline()?,
            "StartImagePipelineExecution" => {
                let pipeline = self.json_str("imagePipelineArn")?;
                let tags = json_object_tags(&c.json["tags"]);
                let mut out = vec![
                    Self::request_tags(Need::new(action, pipeline), &tags),
                    Need::new("imagebuilder:GetImagePipeline", pipeline).dependent_of(action),
                ];
                if !tags.is_empty() {
                    // What the execution makes is tagged: the image of this pipeline.
                    let image = format!("{}/*", pipeline.replacen(":image-pipeline/", ":image/", 1));
                    out.push(Self::request_tags(
                        Need::new("imagebuilder:TagResource", image).dependent_of(action),
                        &tags,
                    ));
                }
                out
            }
            "ListImageScanFindings" | "ListImageScanFindingAggregations" => {
                let filters: Vec<&Value> = match &c.json["filters"] {
                    Value::Array(f) => f.iter().collect(),
                    _ => c.json.get("filter").into_iter().collect(),
                };
                let mut out = Vec::new();
                for f in filters {
                    let kind = f["name"].as_str().unwrap_or_default();
                    for v in f["values"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                        match kind {
                            "imageBuildVersionArn" => {
                                out.push(Need::new(action, v));
                                if c.operation == "ListImageScanFindings" {
                                    out.push(Need::new("inspector2:ListFindings", "*").dependent_of(action));
                                }
                            }
                            "imagePipelineArn" => out.push(Need::new(action, v)),
                            _ => {}
                        }
                    }
                }
                if out.is_empty() {
                    out.push(Need::new(action, "*"));
                }
                out
            }
            _ => return Ok(None),
        }))
    }

    /// CreateImageRecipe: the new version's ARN, and what Image Builder reads for it: the parent
    /// image (an AMI, an Image Builder image, or an SSM parameter), each component, and tags.
    fn create_image_recipe(&self) -> Result<Vec<Need>, MapError> {
        let c = self.call;
        let name = self.json_str("name")?.to_ascii_lowercase();
        let recipe = self.arn(
            "imagebuilder",
            "imageRecipe",
            &[
                ("Region", &c.region),
                ("Account", &c.account),
                ("ImageRecipeName", &name),
                ("ImageRecipeVersion", self.json_str("semanticVersion")?),
            ],
        )?;
        let tags = json_object_tags(&c.json["tags"]);
        let mut out = vec![Self::request_tags(Need::new(self.action, &recipe), &tags)];
        let parent = self.json_str("parentImage")?;
        if parent.starts_with("ami-") {
            out.push(Need::new("ec2:DescribeImages", "*").dependent_of(self.action));
        } else if let Some(parameter) = parent.strip_prefix("ssm:") {
            out.push(Need::new("ssm:GetParameter", self.ssm_parameter(parameter)?).dependent_of(self.action));
        } else if parent.starts_with("arn:") {
            out.push(Need::new("imagebuilder:GetImage", parent).dependent_of(self.action));
        }
        for component in c.json["components"].as_array().into_iter().flatten() {
            if let Some(arn) = component["componentArn"].as_str() {
                out.push(Need::new("imagebuilder:GetComponent", build_version_arn(arn)).dependent_of(self.action));
            }
        }
        if !tags.is_empty() {
            out.push(Self::request_tags(
                Need::new("imagebuilder:TagResource", recipe).dependent_of(self.action),
                &tags,
            ));
        }
        Ok(out)
    }

    /// UpdateImagePipeline: the pipeline, and what Image Builder checks of what it points at.
    fn update_image_pipeline(&self) -> Result<Vec<Need>, MapError> {
        let c = self.call;
        let j = &c.json;
        let mut out = vec![Need::new(self.action, self.json_str("imagePipelineArn")?)];
        let dep = |action: &str, arn: &str| Need::new(action, arn).dependent_of(self.action);
        if let Some(recipe) = j["imageRecipeArn"].as_str() {
            out.push(dep("imagebuilder:GetImageRecipe", recipe));
        }
        out.push(dep(
            "imagebuilder:GetInfrastructureConfiguration",
            self.json_str("infrastructureConfigurationArn")?,
        ));
        if let Some(d) = j["distributionConfigurationArn"].as_str() {
            out.push(dep("imagebuilder:GetDistributionConfiguration", d));
        }
        for w in j["workflows"].as_array().into_iter().flatten() {
            if let Some(arn) = w["workflowArn"].as_str() {
                out.push(dep("imagebuilder:GetWorkflow", &build_version_arn(arn)));
            }
        }
        if let Some(role) = j["executionRole"].as_str() {
            let role = if role.starts_with("arn:") {
                role.to_owned()
            } else {
                self.arn("iam", "role", &[("Account", &c.account), ("RoleNameWithPath", role)])?
            };
            out.push(dep("iam:PassRole", &role).with("iam:PassedToService", ["imagebuilder.amazonaws.com"]));
        }
        if j.pointer("/imageScanningConfiguration/imageScanningEnabled") == Some(&Value::Bool(true)) {
            out.push(dep("inspector2:BatchGetAccountStatus", "*"));
        }
        Ok(out)
    }
}

/// lambda:InvokeFunction on a function, as a service or a schedule delivers to it.
pub fn invoke_need(function_arn: &str) -> Need {
    Need::new("lambda:InvokeFunction", function_arn)
}

/// sns:Subscribe on a topic, as CloudFormation subscribes an endpoint for the stack.
pub fn subscribe_need(topic_arn: &str, protocol: &str, endpoint: &str) -> Need {
    Need::new("sns:Subscribe", topic_arn)
        .with("sns:Protocol", [protocol])
        .with("sns:Endpoint", [endpoint])
}

/// events:PutEvents on a bus, as a rule forwards an event to it.
pub fn put_events_need(bus_arn: &str, source: &str, detail_type: &str) -> Need {
    Need::new("events:PutEvents", bus_arn)
        .with("events:source", [source])
        .with("events:detail-type", [detail_type])
}

/// sqs:SendMessage on a queue, as a dead letter is sent.
pub fn send_message_need(queue_arn: &str) -> Need {
    Need::new("sqs:SendMessage", queue_arn)
}

/// What EC2 asks of KMS for the caller when it encrypts a copy's snapshots with `key`, by the
/// caller's rights through EC2 (`kms:ViaService`); EBS encryption's documented KMS permissions.
fn ebs_kms_needs(region: &str, account: &str, key: &str, action: &str) -> Vec<Need> {
    [
        "kms:DescribeKey",
        "kms:CreateGrant",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:Decrypt",
    ]
    .into_iter()
    .map(|kms| {
        Need::new(kms, "")
            .with("kms:ViaService", [format!("ec2.{region}.amazonaws.com")])
            .with("kms:CallerAccount", [account])
            .with("aws:ViaAWSService", ["true"])
            .with("aws:CalledVia", ["ec2.amazonaws.com"])
            .looking_up(Lookup::KmsKey {
                region: region.to_owned(),
                key: key.to_owned(),
            })
            .dependent_of(action)
    })
    .collect()
}

/// A recipe or pipeline may name a component or workflow by version (`component/<name>/1.x.x`,
/// `workflow/build/<name>/x.x.x`); IAM's resource type is the build version (one more path
/// segment), which Image Builder resolves.
fn build_version_arn(arn: &str) -> String {
    let versioned = [(":component/", 2), (":workflow/", 3)]
        .into_iter()
        .any(|(kind, segments)| {
            arn.split_once(kind)
                .is_some_and(|(_, rest)| rest.split('/').count() == segments)
        });
    if versioned {
        format!("{arn}/*")
    } else {
        arn.to_owned()
    }
}

/// `[{"Key": k, "Value": v}]` → pairs.
fn json_tags(v: &Value, key: &str, value: &str) -> Vec<(String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some((
                t[key].as_str()?.to_owned(),
                t[value].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// `{"k": "v"}` → pairs.
fn json_object_tags(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// `http://host/<account>/<name>` → `arn:aws:sqs:<region>:<account>:<name>`.
pub fn queue_arn(url: &str, region: &str) -> Option<String> {
    let path = url.split("://").nth(1)?.split_once('/')?.1;
    let (account, name) = path.trim_end_matches('/').split_once('/')?;
    Some(format!("arn:aws:sqs:{region}:{account}:{name}"))
}

/// A function name as Lambda takes it (name, `name:qualifier`, partial or full ARN) → its ARN.
pub fn function_arn(name: &str, region: &str, account: &str) -> String {
    if name.starts_with("arn:") {
        return name.to_owned();
    }
    match name.split_once(":function:") {
        Some((acct, rest)) => format!("arn:aws:lambda:{region}:{acct}:function:{rest}"),
        None => format!("arn:aws:lambda:{region}:{account}:function:{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn data() -> ActionData {
        let repo = crate::repo_root(Path::new(env!("CARGO_MANIFEST_DIR")));
        ActionData::for_repo(&repo).expect("run local/tools.sh first")
    }

    fn call(service: &str, operation: &str) -> Call {
        Call {
            service: service.into(),
            operation: operation.into(),
            region: "eu-west-1".into(),
            account: "123456789012".into(),
            ..Default::default()
        }
    }

    fn form(mut c: Call, pairs: &[(&str, &str)]) -> Call {
        c.form = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        c
    }

    fn resources(needs: &[Need]) -> Vec<(&str, &str)> {
        needs.iter().map(|n| (n.action.as_str(), n.resource.as_str())).collect()
    }

    #[test]
    fn copy_image_needs_the_source_the_target_its_tags_and_the_key() {
        let d = data();
        let c = form(
            call("ec2", "CopyImage"),
            &[
                ("SourceRegion", "us-east-1"),
                ("SourceImageId", "ami-0123456789abcdef0"),
                ("TagSpecification.1.ResourceType", "image"),
                ("TagSpecification.1.Tag.1.Key", "bakery:bake-id"),
                ("TagSpecification.1.Tag.1.Value", "web-1"),
                ("Encrypted", "true"),
                ("KmsKeyId", "arn:aws:kms:eu-west-1:123456789012:key/k"),
            ],
        );
        let n = needs(&c, &d).unwrap();
        let r = resources(&n);
        assert_eq!(
            &r[..5],
            [
                ("ec2:CopyImage", "arn:aws:ec2:us-east-1::image/ami-0123456789abcdef0"),
                ("ec2:CopyImage", "arn:aws:ec2:eu-west-1::image/*"),
                ("ec2:CopyImage", "arn:aws:ec2:eu-west-1::snapshot/*"),
                ("ec2:CreateTags", "arn:aws:ec2:eu-west-1::image/*"),
                ("ec2:CreateTags", "arn:aws:ec2:eu-west-1::snapshot/*"),
            ]
        );
        assert_eq!(n[3].context["ec2:CreateAction"], ["CopyImage"]);
        assert_eq!(n[3].context["aws:RequestTag/bakery:bake-id"], ["web-1"]);
        assert_eq!(
            n[0].lookup,
            Lookup::Ec2Tags {
                region: "us-east-1".into(),
                id: "ami-0123456789abcdef0".into()
            }
        );
        let kms: Vec<&Need> = n.iter().filter(|n| n.action.starts_with("kms:")).collect();
        assert!(kms.iter().any(|n| n.action == "kms:CreateGrant"));
        assert!(kms
            .iter()
            .all(|n| n.context["kms:ViaService"] == ["ec2.eu-west-1.amazonaws.com"]));
    }

    #[test]
    fn a_parameter_path_is_authorized_as_its_own_arn() {
        let mut c = call("ssm", "GetParametersByPath");
        c.json = json!({"Path": "/bakery/policies", "Recursive": false});
        let n = needs(&c, &data()).unwrap();
        assert_eq!(
            resources(&n),
            [(
                "ssm:GetParametersByPath",
                "arn:aws:ssm:eu-west-1:123456789012:parameter/bakery/policies"
            )]
        );
        assert_eq!(n[0].context["ssm:Recursive"], ["OneLevel"]);
    }

    #[test]
    fn wildcard_only_actions_and_unmapped_ones() {
        let d = data();
        let n = needs(&form(call("ec2", "DescribeImages"), &[]), &d).unwrap();
        assert_eq!(resources(&n), [("ec2:DescribeImages", "*")]);
        let n = needs(&call("states", "SendTaskSuccess"), &d).unwrap();
        assert_eq!(resources(&n), [("states:SendTaskSuccess", "*")]);
        let e = needs(&form(call("ec2", "RunInstances"), &[]), &d).unwrap_err();
        assert!(matches!(e, MapError::Unmapped { .. }), "{e}");
        let e = needs(&form(call("ec2", "CreateTags"), &[("ResourceId.1", "i-0abc")]), &d).unwrap_err();
        assert!(e.to_string().contains("i-0abc"), "{e}");
    }

    #[test]
    fn queue_urls_and_function_names() {
        assert_eq!(
            queue_arn("http://127.0.0.1:5000/123456789012/dlq", "us-east-1").as_deref(),
            Some("arn:aws:sqs:us-east-1:123456789012:dlq")
        );
        assert_eq!(queue_arn("not a url", "us-east-1"), None);
        assert_eq!(
            function_arn("bakery-Trigger", "us-east-1", "1"),
            "arn:aws:lambda:us-east-1:1:function:bakery-Trigger"
        );
        assert_eq!(
            function_arn("2:function:f", "us-east-1", "1"),
            "arn:aws:lambda:us-east-1:2:function:f"
        );
    }

    /// Requests with everything set that makes an action need its dependent actions.
    fn full(service: &str, operation: &str) -> Vec<Call> {
        let one = full_one(service, operation);
        if operation != "CreateImageRecipe" {
            return vec![one];
        }
        // The parent image is an AMI, an Image Builder image, or an SSM parameter.
        let mut parents = vec![one.clone()];
        for parent in [
            "arn:aws:imagebuilder:eu-west-1:123456789012:image/base/1.0.0/1",
            "ssm:/soe/latest",
        ] {
            let mut c = one.clone();
            c.json["parentImage"] = json!(parent);
            parents.push(c);
        }
        parents
    }

    fn full_one(service: &str, operation: &str) -> Call {
        let mut c = call(service, operation);
        let ib = "arn:aws:imagebuilder:eu-west-1:123456789012";
        match operation {
            "CopyImage" => {
                c = form(
                    c,
                    &[
                        ("SourceRegion", "us-east-1"),
                        ("SourceImageId", "ami-1"),
                        ("TagSpecification.1.Tag.1.Key", "k"),
                        ("Encrypted", "true"),
                    ],
                )
            }
            "CreateImageRecipe" => {
                c.json = json!({"name": "r", "semanticVersion": "1.0.1", "parentImage": "ami-1",
                    "components": [{"componentArn": format!("{ib}:component/c/1.0.0/1")}], "tags": {"k": "v"}})
            }
            "UpdateImagePipeline" => {
                c.json = json!({"imagePipelineArn": format!("{ib}:image-pipeline/p"),
                    "imageRecipeArn": format!("{ib}:image-recipe/r/1.0.1"),
                    "infrastructureConfigurationArn": format!("{ib}:infrastructure-configuration/i"),
                    "distributionConfigurationArn": format!("{ib}:distribution-configuration/d"),
                    "workflows": [{"workflowArn": format!("{ib}:workflow/build/w/1.0.0/1")}],
                    "executionRole": "arn:aws:iam::123456789012:role/ib",
                    "imageScanningConfiguration": {"imageScanningEnabled": true}})
            }
            "StartImagePipelineExecution" => {
                c.json = json!({"imagePipelineArn": format!("{ib}:image-pipeline/p"), "tags": {"k": "v"}})
            }
            "ListImageScanFindings" => {
                c.json =
                    json!({"filters": [{"name": "imageBuildVersionArn", "values": [format!("{ib}:image/p/1.0.0/1")]}]})
            }
            _ => {}
        }
        c
    }

    #[test]
    fn every_dependent_action_of_a_mapped_action_is_checked_or_explained() {
        let d = data();
        let mapped = [
            ("ec2", "CopyImage"),
            ("imagebuilder", "CreateImageRecipe"),
            ("imagebuilder", "UpdateImagePipeline"),
            ("imagebuilder", "StartImagePipelineExecution"),
            ("imagebuilder", "ListImageScanFindings"),
            ("imagebuilder", "GetComponent"),
            ("imagebuilder", "GetWorkflow"),
        ];
        for (service, operation) in mapped {
            let action = action_of(service, operation);
            let mut checked = BTreeSet::new();
            for c in full(service, operation) {
                let c = Call {
                    query: [
                        (
                            "componentBuildVersionArn".to_owned(),
                            "arn:aws:imagebuilder:eu-west-1:1:component/c/1.0.0/1".to_owned(),
                        ),
                        (
                            "workflowBuildVersionArn".to_owned(),
                            "arn:aws:imagebuilder:eu-west-1:1:workflow/build/w/1.0.0/1".to_owned(),
                        ),
                    ]
                    .into(),
                    ..c
                };
                checked.extend(
                    needs(&c, &d)
                        .unwrap()
                        .into_iter()
                        .filter(|n| n.because_of.as_deref() == Some(action.as_str()))
                        .map(|n| n.action),
                );
            }
            for dep in d.dependent_actions(&action) {
                let explained = NOT_CHECKED.iter().any(|(a, x, _)| *a == action && *x == dep);
                assert!(
                    checked.contains(&dep) || explained,
                    "{action} lists dependent action {dep}: check it when it applies, or say in NOT_CHECKED why it never does"
                );
                assert!(
                    !(checked.contains(&dep) && explained),
                    "{action}: {dep} is both checked and explained away"
                );
            }
        }
        for (action, dep, _) in NOT_CHECKED {
            assert!(
                d.dependent_actions(action).contains(&(*dep).to_owned()),
                "NOT_CHECKED names {dep} for {action}, which the Reference no longer lists"
            );
        }
    }
}
