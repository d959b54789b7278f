//! The DynamoDB tables' names.

/// DynamoDB table names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub users: String,
    pub credits: String,
    pub codes: String,
    pub sessions: String,
    pub catalogue: String,
    pub generations: String,
    pub characters: String,
    pub devices: String,
}

impl Tables {
    /// Template.yaml's logical ids of the tables, in field order.
    pub const LOGICAL_IDS: [&'static str; 8] = [
        "UsersTable",
        "CreditsTable",
        "CodesTable",
        "SessionsTable",
        "CatalogueTable",
        "GenerationsTable",
        "CharactersTable",
        "DevicesTable",
    ];

    /// `<prefix><LogicalId>`: how tables are named when created from template.yaml outside CloudFormation
    /// (DynamoDB Local for tests and the local API).
    pub fn prefixed(prefix: &str) -> Self {
        let [users, credits, codes, sessions, catalogue, generations, characters, devices] =
            Self::LOGICAL_IDS.map(|id| format!("{prefix}{id}"));
        Self { users, credits, codes, sessions, catalogue, generations, characters, devices }
    }
}
