//! Local-only stand-ins for StoreKit and the App Store: sign test purchases and notifications with the local
//! API's own chain (which only the local API trusts), so the purchase and refund flows run end to end without
//! a device or an App Store Connect account.
//!
//! - `POST /_local/app-store/transactions` `{productId, appAccountToken?, quantity?, transactionId?}` →
//!   `{transactionId, signedTransaction}`: what StoreKit 2 hands the app after a purchase.
//! - `POST /_local/app-store/notifications` `{notificationType, transactionId, productId?}` →
//!   `{notificationUUID, signedPayload}`: what Apple posts to `/v1/webhooks/app-store`.

use appstore_test_chain::{notification, Transaction};
use bytes::Bytes;
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use crate::{plain, LocalApi};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TransactionRequest {
    product_id: String,
    app_account_token: Option<String>,
    quantity: Option<u32>,
    transaction_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NotificationRequest {
    notification_type: String,
    transaction_id: String,
    product_id: Option<String>,
}

/// A transaction id shaped like Apple's (16 digits).
fn transaction_id() -> String {
    let n = facemake::crypto::random_bytes::<8>().map(u64::from_be_bytes).unwrap_or(0);
    format!("{}", 2_000_000_000_000_000 + n % 1_000_000_000_000_000)
}

fn notification_uuid() -> String {
    let bytes = facemake::crypto::random_bytes::<16>().unwrap_or([7; 16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

fn ok(value: serde_json::Value) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(value.to_string())));
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

impl LocalApi {
    fn transaction(&self, transaction_id: &str, product_id: &str) -> Transaction {
        Transaction::consumable(transaction_id, product_id, &self.credits.app_store.bundle_id, "Sandbox")
    }

    pub(crate) fn sign_app_store(&self, path: &str, body: &[u8]) -> http::Response<Full<Bytes>> {
        let signed = match path {
            "/_local/app-store/transactions" => {
                let req: TransactionRequest = match serde_json::from_slice(body) {
                    Ok(r) => r,
                    Err(e) => return plain(400, &format!("expected {{productId, appAccountToken?, quantity?}}: {e}")),
                };
                let id = req.transaction_id.unwrap_or_else(transaction_id);
                let mut t = self.transaction(&id, &req.product_id);
                t.app_account_token = req.app_account_token;
                t.quantity = req.quantity.unwrap_or(1);
                self.app_store.sign(&t.payload()).map(|jws| json!({ "transactionId": id, "signedTransaction": jws }))
            }
            "/_local/app-store/notifications" => {
                let req: NotificationRequest = match serde_json::from_slice(body) {
                    Ok(r) => r,
                    Err(e) => return plain(400, &format!("expected {{notificationType, transactionId}}: {e}")),
                };
                let product = req.product_id.unwrap_or_else(|| "app.facemake.credits.10".to_owned());
                let uuid = notification_uuid();
                self.app_store.sign(&self.transaction(&req.transaction_id, &product).payload()).and_then(|info| {
                    let payload = notification(
                        &req.notification_type,
                        &uuid,
                        &self.credits.app_store.bundle_id,
                        "Sandbox",
                        Some(&info),
                    );
                    self.app_store.sign(&payload).map(|jws| json!({ "notificationUUID": uuid, "signedPayload": jws }))
                })
            }
            _ => return plain(404, "no such local App Store route"),
        };
        match signed {
            Ok(value) => ok(value),
            Err(e) => plain(500, &e.to_string()),
        }
    }
}
