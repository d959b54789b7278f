use std::sync::Arc;

use crate::domain::{DisplayName, UserAccount, UserId};
use crate::ports::{AccountStore, PortError};

/// The signed-in user's own account.
pub struct Account {
    pub accounts: Arc<dyn AccountStore>,
}

impl Account {
    pub async fn get(&self, user: &UserId) -> Result<Option<UserAccount>, PortError> {
        self.accounts.get_user(user).await
    }

    /// Sets (or with `None` clears) the display name.
    pub async fn set_display_name(
        &self,
        user: &UserId,
        name: Option<DisplayName>,
    ) -> Result<Option<UserAccount>, PortError> {
        self.accounts.set_display_name(user, name.as_ref().map(DisplayName::as_str)).await
    }
}
