use std::sync::Arc;

use crate::domain::{object_keys, DisplayName, ProfileStats, UserAccount, UserId};
use crate::ports::{AccountEraser, AccountStore, Clock, Identity, ObjectStore, PortError, ProfileUpdate};

/// The signed-in user's own account.
pub struct Account {
    pub accounts: Arc<dyn AccountStore>,
    pub eraser: Arc<dyn AccountEraser>,
    pub objects: Arc<dyn ObjectStore>,
    pub clock: Arc<dyn Clock>,
}

/// What a deletion removed (for the log line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    pub sessions: usize,
    pub favorites: usize,
    pub characters: usize,
    pub devices: usize,
    pub generations: usize,
    pub objects: usize,
}

impl Account {
    pub async fn get(&self, user: &UserId) -> Result<Option<UserAccount>, PortError> {
        self.accounts.get_user(user).await
    }

    /// The user and the profile's counters, in one round trip.
    pub async fn get_with_stats(&self, user: &UserId) -> Result<Option<(UserAccount, ProfileStats)>, PortError> {
        self.accounts.get_user_with_stats(user).await
    }

    /// Sets (or with `None` clears) the display name.
    /// Changes the writable profile fields in one write (a new display name is parsed by the caller).
    pub async fn update_profile(
        &self,
        user: &UserId,
        display_name: Option<Option<&DisplayName>>,
        consumption_consent: Option<bool>,
    ) -> Result<Option<UserAccount>, PortError> {
        let change =
            ProfileUpdate { display_name: display_name.map(|name| name.map(DisplayName::as_str)), consumption_consent };
        self.accounts.update_profile(user, &change).await
    }

    /// Deletes the account and everything of it (App Store guideline 5.1.1(v)): marks it deleted first, so
    /// its access tokens change nothing more, then erases sessions, favourites, characters, devices, generations, every image under
    /// the user's prefixes, moves the credits ledger to an anonymous id (kept for accounting), and finally the
    /// phone number, its code record and the profile, leaving the number's mark (`NumberMark`: no new starter
    /// grant, the same send limits, for a year) under a keyed hash of it. Every step is idempotent: a deletion interrupted
    /// half-way (an error, a timeout) is finished by running it again.
    pub async fn delete(&self, user: &UserId) -> Result<Erased, PortError> {
        let now = self.clock.now();
        self.accounts.mark_deleted(user, now).await?;
        // Read before anything goes: the profile is what names the phone number (gone on a finished re-run).
        let profile = self.accounts.get_user(user).await?;
        let mut erased = Erased {
            sessions: self.eraser.erase_sessions(user).await?,
            favorites: self.eraser.erase_favorites(user).await?,
            characters: self.eraser.erase_characters(user).await?,
            devices: self.eraser.erase_devices(user).await?,
            generations: self.eraser.erase_generations(user).await?,
            objects: 0,
        };
        for prefix in object_keys::user_prefixes(user) {
            erased.objects += self.objects.delete_prefix(&prefix).await?;
        }
        self.eraser.anonymise_credits(user, &user.anonymised(), now).await?;
        let identity = profile.as_ref().map(|p| Identity { phone: &p.phone, number_key: p.number_key.as_deref() });
        self.eraser.erase_identity(user, identity, now).await?;
        self.accounts.deletion_finished(user, now).await?;
        tracing::info!(
            sessions = erased.sessions,
            favorites = erased.favorites,
            characters = erased.characters,
            devices = erased.devices,
            generations = erased.generations,
            objects = erased.objects,
            "account deleted"
        );
        Ok(erased)
    }

    /// Finishes deletions that started but were interrupted and never retried (run by the reconciler).
    /// Returns how many finished; one that fails again is logged and left for the next run.
    pub async fn finish_pending_deletions(&self, limit: usize) -> Result<usize, PortError> {
        let mut finished = 0;
        for user in self.accounts.pending_deletions(limit).await? {
            match self.delete(&user).await {
                Ok(_) => finished += 1,
                Err(e) => tracing::error!(
                    user = crate::telemetry::user_ref(&user),
                    error = %e,
                    "finishing an interrupted account deletion failed"
                ),
            }
        }
        Ok(finished)
    }
}
