//! Table definitions read from `template.yaml`, so that local tables and deployed
//! ones come from the same text and cannot drift.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::update_time_to_live::UpdateTimeToLiveError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use serde_yaml_ng::Value;

/// The project's SAM template, as compiled into this crate.
pub const TEMPLATE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"));

/// Logical id of the sessions table in the template.
pub const SESSIONS_TABLE: &str = "SessionsTable";
/// Logical id of the registry table (memberships, revocation locks, idempotency records).
pub const REGISTRY_TABLE: &str = "RegistryTable";

/// What went wrong reading a table definition or creating the table.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The template is not YAML.
    #[error("template.yaml does not parse")]
    Yaml(#[from] serde_yaml_ng::Error),
    /// The template lacks something a table definition needs.
    #[error("template.yaml: {0}")]
    Template(String),
    /// A request could not be built.
    #[error("could not build a DynamoDB request")]
    Build(#[from] aws_sdk_dynamodb::error::BuildError),
    /// CreateTable failed.
    #[error("DynamoDB CreateTable failed")]
    CreateTable(#[source] Box<SdkError<CreateTableError, HttpResponse>>),
    /// UpdateTimeToLive failed.
    #[error("DynamoDB UpdateTimeToLive failed")]
    UpdateTimeToLive(#[source] Box<SdkError<UpdateTimeToLiveError, HttpResponse>>),
}

/// A table as the template defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    /// Attribute definitions of the key attributes.
    pub attributes: Vec<AttributeDefinition>,
    /// The table's key.
    pub key_schema: Vec<KeySchemaElement>,
    /// Global secondary indexes.
    pub indexes: Vec<GlobalSecondaryIndex>,
    /// The stream's view type, if a stream is enabled.
    pub stream_view: Option<StreamViewType>,
    /// The TTL attribute, if TTL is enabled.
    pub ttl_attribute: Option<String>,
}

fn field<'a>(value: &'a Value, name: &str, context: &str) -> Result<&'a Value, SchemaError> {
    value
        .get(name)
        .ok_or_else(|| SchemaError::Template(format!("{context} has no {name}")))
}

fn text<'a>(value: &'a Value, name: &str, context: &str) -> Result<&'a str, SchemaError> {
    field(value, name, context)?
        .as_str()
        .ok_or_else(|| SchemaError::Template(format!("{context}.{name} is not a plain string")))
}

fn list<'a>(value: &'a Value, name: &str, context: &str) -> Result<&'a [Value], SchemaError> {
    field(value, name, context)?
        .as_sequence()
        .map(Vec::as_slice)
        .ok_or_else(|| SchemaError::Template(format!("{context}.{name} is not a list")))
}

fn key_schema(value: &Value, context: &str) -> Result<Vec<KeySchemaElement>, SchemaError> {
    list(value, "KeySchema", context)?
        .iter()
        .map(|k| {
            Ok(KeySchemaElement::builder()
                .attribute_name(text(k, "AttributeName", context)?)
                .key_type(KeyType::from(text(k, "KeyType", context)?))
                .build()?)
        })
        .collect()
}

impl TableSpec {
    /// The table with logical id `logical_id` in `template` (YAML text).
    pub fn from_template(template: &str, logical_id: &str) -> Result<Self, SchemaError> {
        let doc: Value = serde_yaml_ng::from_str(template)?;
        let resource = doc
            .get("Resources")
            .and_then(|r| r.get(logical_id))
            .ok_or_else(|| SchemaError::Template(format!("no resource {logical_id}")))?;
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::DynamoDB::Table") {
            return Err(SchemaError::Template(format!(
                "{logical_id} is not an AWS::DynamoDB::Table"
            )));
        }
        let props = field(resource, "Properties", logical_id)?;
        let attributes = list(props, "AttributeDefinitions", logical_id)?
            .iter()
            .map(|a| {
                Ok(AttributeDefinition::builder()
                    .attribute_name(text(a, "AttributeName", logical_id)?)
                    .attribute_type(ScalarAttributeType::from(text(a, "AttributeType", logical_id)?))
                    .build()?)
            })
            .collect::<Result<_, SchemaError>>()?;
        let indexes = match props.get("GlobalSecondaryIndexes") {
            None => Vec::new(),
            Some(_) => list(props, "GlobalSecondaryIndexes", logical_id)?
                .iter()
                .map(|gsi| {
                    let name = text(gsi, "IndexName", logical_id)?;
                    let projection = field(gsi, "Projection", name)?;
                    let non_key: Option<Vec<String>> = projection
                        .get("NonKeyAttributes")
                        .and_then(Value::as_sequence)
                        .map(|s| s.iter().filter_map(Value::as_str).map(str::to_owned).collect());
                    Ok(GlobalSecondaryIndex::builder()
                        .index_name(name)
                        .set_key_schema(Some(key_schema(gsi, name)?))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::from(text(projection, "ProjectionType", name)?))
                                .set_non_key_attributes(non_key)
                                .build(),
                        )
                        .build()?)
                })
                .collect::<Result<_, SchemaError>>()?,
        };
        let stream_view = props
            .get("StreamSpecification")
            .map(|s| text(s, "StreamViewType", logical_id).map(StreamViewType::from))
            .transpose()?;
        let ttl_attribute = props
            .get("TimeToLiveSpecification")
            .filter(|t| t.get("Enabled").and_then(Value::as_bool) == Some(true))
            .map(|t| text(t, "AttributeName", logical_id).map(str::to_owned))
            .transpose()?;
        Ok(Self {
            attributes,
            key_schema: key_schema(props, logical_id)?,
            indexes,
            stream_view,
            ttl_attribute,
        })
    }

    /// The sessions table as [`TEMPLATE`] defines it.
    pub fn sessions() -> Result<Self, SchemaError> {
        Self::from_template(TEMPLATE, SESSIONS_TABLE)
    }

    /// Creates the table as `name` (on-demand billing, stream and TTL as defined).
    /// Returns `false` if a table of that name already exists.
    pub async fn create(&self, client: &Client, name: &str) -> Result<bool, SchemaError> {
        let stream = self
            .stream_view
            .clone()
            .map(|view| {
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(view)
                    .build()
            })
            .transpose()?;
        let created = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(self.attributes.clone()))
            .set_key_schema(Some(self.key_schema.clone()))
            .set_global_secondary_indexes((!self.indexes.is_empty()).then(|| self.indexes.clone()))
            .set_stream_specification(stream)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if matches!(e.as_service_error(), Some(CreateTableError::ResourceInUseException(_))) => {
                return Ok(false);
            }
            Err(e) => return Err(SchemaError::CreateTable(Box::new(e))),
        }
        if let Some(attribute) = &self.ttl_attribute {
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attribute)
                        .enabled(true)
                        .build()?,
                )
                .send()
                .await
                .map_err(|e| SchemaError::UpdateTimeToLive(Box::new(e)))?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::{EXPIRY_INDEX, attr};

    #[test]
    fn the_templates_registry_table_matches_what_the_store_writes() {
        use crate::registry::attr;
        let spec = TableSpec::from_template(TEMPLATE, REGISTRY_TABLE).unwrap();
        let keys: Vec<_> = spec.key_schema.iter().map(|k| k.attribute_name().to_owned()).collect();
        assert_eq!(keys, [attr::PK, attr::SK]);
        assert_eq!(spec.ttl_attribute.as_deref(), Some(attr::EXPIRES_AT));
        assert_eq!(spec.stream_view, None, "nothing reads a stream of it");
        assert!(
            spec.indexes.is_empty(),
            "read strongly consistently, so by its key only"
        );
    }

    #[test]
    fn the_templates_sessions_table_matches_what_the_store_writes() {
        let spec = TableSpec::sessions().unwrap();
        assert_eq!(spec.key_schema[0].attribute_name(), attr::HANDLE);
        assert_eq!(spec.indexes.len(), 1, "the expiry index only");
        assert_eq!(spec.ttl_attribute.as_deref(), Some(attr::EXPIRES_AT));
        assert_eq!(spec.stream_view, Some(StreamViewType::OldImage));
        let index = |name: &str| spec.indexes.iter().find(|i| i.index_name() == name).unwrap();
        let keys = |name: &str| {
            index(name)
                .key_schema()
                .iter()
                .map(|k| k.attribute_name().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(EXPIRY_INDEX), [attr::EXPIRY_SHARD, attr::EXPIRY_BUCKET]);
        assert_eq!(
            index(EXPIRY_INDEX).projection().and_then(|p| p.projection_type()),
            Some(&ProjectionType::KeysOnly)
        );
    }
}
