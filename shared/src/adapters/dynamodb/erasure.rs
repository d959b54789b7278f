//! Account deletion, one idempotent step per kind of data (see `AccountEraser`).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};

use super::accounts::{phone_pk, user_pk, LedgerItem, PHONE, PROFILE};
use super::codes::{otp_pk, MarkItem, OtpItem, OTP_SK};
use super::{from_item, key, s, sdk_error, to_item, DynamoStore, Item};
use crate::domain::{LedgerEntry, LedgerKind, NumberMark, UnixTime, UserId};
use crate::ports::{AccountEraser, Identity, LedgerReader, PortError};

/// Ledger entries moved per transaction (two actions each; a transaction takes at most 100).
const MOVE_CHUNK: usize = 50;

impl DynamoStore {
    /// Every key of a query (all pages).
    async fn keys_of(
        &self,
        table: &str,
        index: Option<&str>,
        condition: &str,
        values: &[(&str, &str)],
    ) -> Result<Vec<Item>, PortError> {
        let mut keys = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression(condition)
                .set_exclusive_start_key(start.take());
            for (name, value) in values {
                query = query.expression_attribute_values(*name, s(*value));
            }
            let out = query.send().await.map_err(|e| sdk_error("erasure", e))?;
            for item in out.items.unwrap_or_default() {
                let k: Item = item.into_iter().filter(|(name, _)| name == "pk" || name == "sk").collect();
                keys.push(k);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(keys),
            }
        }
    }

    async fn delete_keys(&self, table: &str, keys: &[Item]) -> Result<usize, PortError> {
        for k in keys {
            self.client
                .delete_item()
                .table_name(table)
                .set_key(Some(k.clone()))
                .send()
                .await
                .map_err(|e| sdk_error("erasure", e))?;
        }
        Ok(keys.len())
    }

    async fn delete_one(
        &self,
        table: &str,
        pk: String,
        sk: &str,
        condition: Option<(&str, &str)>,
    ) -> Result<(), PortError> {
        let mut delete = self.client.delete_item().table_name(table).set_key(Some(key(pk, sk)));
        if let Some((expression, user)) = condition {
            delete = delete.condition_expression(expression).expression_attribute_values(":user", s(user));
        }
        match delete.send().await {
            Ok(_) => Ok(()),
            // The item points at someone else now (a new account on the same number): not ours to delete.
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(sdk_error("erasure", e)),
        }
    }
}

#[async_trait]
impl AccountEraser for DynamoStore {
    async fn erase_sessions(&self, user: &UserId) -> Result<usize, PortError> {
        let keys = self.keys_of(&self.tables.sessions, Some("ByUser"), "userId = :u", &[(":u", user.as_str())]).await?;
        self.delete_keys(&self.tables.sessions, &keys).await
    }

    async fn erase_favorites(&self, user: &UserId) -> Result<usize, PortError> {
        let pk = user_pk(user);
        let condition = "pk = :pk AND begins_with(sk, :fav)";
        let keys = self.keys_of(&self.tables.users, None, condition, &[(":pk", &pk), (":fav", "FAV#")]).await?;
        self.delete_keys(&self.tables.users, &keys).await
    }

    async fn erase_characters(&self, user: &UserId) -> Result<usize, PortError> {
        let pk = user_pk(user);
        let keys = self.keys_of(&self.tables.characters, None, "pk = :pk", &[(":pk", &pk)]).await?;
        self.delete_keys(&self.tables.characters, &keys).await
    }

    async fn erase_devices(&self, user: &UserId) -> Result<usize, PortError> {
        // From the index (eventually consistent: a device registered in the second before the deletion's
        // tombstone may be missed; it holds only a token and the user id, and expires with its lifetime).
        let (table, index) = (&self.tables.devices, Some(super::devices::BY_USER));
        let keys = self.keys_of(table, index, "userId = :user", &[(":user", user.as_str())]).await?;
        for k in &keys {
            let Some(AttributeValue::S(pk)) = k.get("pk") else { continue };
            // Conditioned on the user: a token another user registered meanwhile is theirs now.
            self.delete_one(table, pk.clone(), "DEVICE", Some(("userId = :user", user.as_str()))).await?;
        }
        Ok(keys.len())
    }

    async fn erase_generations(&self, user: &UserId) -> Result<usize, PortError> {
        let pk = user_pk(user);
        let keys = self.keys_of(&self.tables.generations, None, "pk = :pk", &[(":pk", &pk)]).await?;
        self.delete_keys(&self.tables.generations, &keys).await
    }

    async fn anonymise_credits(&self, user: &UserId, anon: &UserId, now: UnixTime) -> Result<(), PortError> {
        // 1. Purchases first: from now on a refund or reversal of one applies to the anonymous ledger (their
        //    transition is conditioned on the owner), so nothing new lands on this user's balance.
        self.rekey_purchases(&self.whole_ledger(user).await?, user, anon).await?;
        // 2. Forfeit whatever the balance is when the change commits (conditioned on it, with its entry).
        self.forfeit(user, now).await?;
        // 3. Move each entry: put it under the anonymous id and delete it here, in one transaction per chunk;
        //    again until none is left (an entry that landed while moving is moved too).
        loop {
            let entries = self.whole_ledger(user).await?;
            if entries.is_empty() {
                break;
            }
            // A purchase that passed the guard just before the deletion began may have landed since step 1.
            self.rekey_purchases(&entries, user, anon).await?;
            for chunk in entries.chunks(MOVE_CHUNK) {
                let mut items = Vec::with_capacity(chunk.len() * 2);
                for entry in chunk {
                    let moved = LedgerItem::new(anon, entry);
                    let put = Put::builder()
                        .table_name(&self.tables.credits)
                        .set_item(Some(to_item("erasure", &moved)?))
                        .build()
                        .map_err(|e| PortError::internal("erasure", e))?;
                    let delete = Delete::builder()
                        .table_name(&self.tables.credits)
                        .set_key(Some(key(user_pk(user), format!("LEDGER#{}", entry.id))))
                        .build()
                        .map_err(|e| PortError::internal("erasure", e))?;
                    items.push(TransactWriteItem::builder().put(put).build());
                    items.push(TransactWriteItem::builder().delete(delete).build());
                }
                self.client
                    .transact_write_items()
                    .set_transact_items(Some(items))
                    .send()
                    .await
                    .map_err(|e| sdk_error("erasure", e))?;
            }
        }
        // 4. The balance, only at zero and owing nothing: anything else is credit (or a debt) without a ledger
        //    entry yet; a re-run forfeits it.
        let result = self
            .client
            .delete_item()
            .table_name(&self.tables.credits)
            .set_key(Some(key(user_pk(user), "BALANCE")))
            .condition_expression(
                "attribute_not_exists(pk) OR (balance = :zero AND (attribute_not_exists(debt) OR debt = :zero))",
            )
            .expression_attribute_values(":zero", aws_sdk_dynamodb::types::AttributeValue::N("0".to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
                Err(PortError::unavailable("erasure", "the balance changed during deletion; run it again"))
            }
            Err(e) => Err(sdk_error("erasure", e)),
        }
    }

    async fn erase_identity(
        &self,
        user: &UserId,
        identity: Option<Identity<'_>>,
        now: UnixTime,
    ) -> Result<(), PortError> {
        // One transaction: the number's code record and index go only while the index is this user's (or gone,
        // on a re-run), with the number's mark put in their place and the profile deleted, so no run can leave
        // a profile nothing leads to, nor a number without its mark.
        let mut items = Vec::new();
        if let Some(Identity { phone: e164, number_key }) = identity {
            if let Some(number_key) = number_key {
                // The code record's send history goes into the mark (read first: a code sent in between is
                // one send the mark misses, not a write lost).
                let record = self
                    .client
                    .get_item()
                    .table_name(&self.tables.codes)
                    .set_key(Some(key(otp_pk(e164), OTP_SK)))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| sdk_error("codes", e))?
                    .item
                    .map(|item| from_item::<OtpItem>("codes", item).map(|i| i.record))
                    .transpose()?;
                let mark = MarkItem::new(number_key, NumberMark::at_deletion(record.as_ref(), now));
                let put = Put::builder()
                    .table_name(&self.tables.codes)
                    .set_item(Some(to_item("codes", &mark)?))
                    .build()
                    .map_err(|e| PortError::internal("erasure", e))?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            let otp = Delete::builder()
                .table_name(&self.tables.codes)
                .set_key(Some(key(otp_pk(e164), OTP_SK)))
                .build()
                .map_err(|e| PortError::internal("erasure", e))?;
            let index = Delete::builder()
                .table_name(&self.tables.users)
                .set_key(Some(key(phone_pk(e164), PHONE)))
                .condition_expression("attribute_not_exists(pk) OR userId = :user")
                .expression_attribute_values(":user", s(user.as_str()))
                .build()
                .map_err(|e| PortError::internal("erasure", e))?;
            items.push(TransactWriteItem::builder().delete(index).build());
            items.push(TransactWriteItem::builder().delete(otp).build());
        }
        let profile = Delete::builder()
            .table_name(&self.tables.users)
            .set_key(Some(key(user_pk(user), PROFILE)))
            .build()
            .map_err(|e| PortError::internal("erasure", e))?;
        items.push(TransactWriteItem::builder().delete(profile).build());
        match self.transact_once(items).await? {
            None => Ok(()),
            // The number already belongs to a new account (a re-run long after): leave its index and code
            // record alone, delete only what is ours.
            Some(_) => self.delete_one(&self.tables.users, user_pk(user), PROFILE, None).await,
        }
    }
}

impl DynamoStore {
    /// Re-keys the App Store purchases among `entries` from `user` to `anon` (already re-keyed ones are left).
    async fn rekey_purchases(&self, entries: &[LedgerEntry], user: &UserId, anon: &UserId) -> Result<(), PortError> {
        for e in entries.iter().filter(|e| e.kind == LedgerKind::Purchase) {
            let result = self
                .client
                .update_item()
                .table_name(&self.tables.credits)
                .set_key(Some(key(format!("APPSTORE_TXN#{}", e.reference), "TXN")))
                .update_expression("SET userId = :anon")
                .condition_expression("userId = :user")
                .expression_attribute_values(":anon", s(anon.as_str()))
                .expression_attribute_values(":user", s(user.as_str()))
                .send()
                .await;
            match result {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(sdk_error("erasure", e)),
            }
        }
        Ok(())
    }

    /// The user's whole ledger.
    async fn whole_ledger(&self, user: &UserId) -> Result<Vec<LedgerEntry>, PortError> {
        let mut entries: Vec<LedgerEntry> = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let page = self.ledger_page(user, 500, before.as_deref()).await?;
            before = page.entries.last().map(|e| e.id.clone());
            entries.extend(page.entries);
            if !page.more {
                return Ok(entries);
            }
        }
    }
}

impl DynamoStore {
    /// Every item of every table as text (tests check that nothing of a deleted account is left).
    pub async fn dump(&self) -> Result<String, PortError> {
        let t = &self.tables;
        let mut text = String::new();
        for table in
            [&t.users, &t.credits, &t.codes, &t.sessions, &t.catalogue, &t.generations, &t.characters, &t.devices]
        {
            let mut pages = self.client.scan().table_name(table).into_paginator().items().send();
            while let Some(item) = pages.next().await {
                text.push_str(&format!("{table}: {:?}\n", item.map_err(|e| sdk_error("erasure", e))?));
            }
        }
        Ok(text)
    }
}
