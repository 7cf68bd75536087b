//! Expression placeholders: every attribute name and value an expression names
//! goes through one [`Expr`], so no expression is written with raw names.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::item::attr;

/// Placeholders for one expression's attribute names and values.
#[derive(Default)]
pub(crate) struct Expr {
    pub(crate) names: HashMap<String, String>,
    pub(crate) values: HashMap<String, AttributeValue>,
}

impl Expr {
    /// The placeholder for a top-level attribute.
    pub(crate) fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    /// The placeholder for a value.
    pub(crate) fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// The placeholder for a number.
    pub(crate) fn num(&mut self, n: impl ToString) -> String {
        self.value(AttributeValue::N(n.to_string()))
    }

    /// `#version IN (...)` for an `If-Match` list.
    pub(crate) fn version_in(&mut self, versions: &[u64]) -> String {
        let list: Vec<String> = versions.iter().map(|v| self.num(v)).collect();
        format!("{} IN ({})", self.name(attr::VERSION), list.join(", "))
    }
}
