//! The credits contract — purchases once per transaction, refunds once per notification and per refund, the
//! balance never below zero, the ledger always summing to the balance — run on the in-memory store and on
//! DynamoDB Local, with the concurrency cases that only a real conditional write can pass.

use std::sync::Arc;

use facemake::domain::{Funds, LedgerEntry, LedgerKind, PhoneNumber, UserId};
use facemake::ports::{AdjustOutcome, NewUser, PurchaseOutcome, RefundOutcome, VerifiedPurchase, Written};
use facemake::wiring::Store;

const NOW: i64 = 1_800_000_000;

testkit::store_contract!(
    a_purchase_is_credited_once_and_only_to_its_owner,
    fifty_concurrent_posts_of_one_transaction_credit_it_once,
    concurrent_distinct_purchases_all_count,
    a_refund_takes_back_once_floors_at_zero_and_reverses,
    a_refund_delivered_twice_concurrently_is_taken_back_once,
    a_refund_before_the_purchase_blocks_it,
    adjustments_never_take_the_balance_below_zero,
    the_ledger_pages_newest_first_without_gaps,
    notifications_are_recorded_once,
    a_refund_of_spent_credits_is_owed_and_the_next_purchase_pays_it_once,
    concurrent_purchases_pay_a_debt_exactly_once,
    concurrent_refunds_of_spent_purchases_owe_both,
    a_reversal_gives_back_what_was_paid_and_clears_what_is_owed,
);

fn unique_phone() -> PhoneNumber {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1000);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    PhoneNumber::parse(&format!("+1415666{n:04}"), None).unwrap()
}

/// A new user with the 3-credit starter grant.
async fn user(store: &Arc<dyn Store>) -> UserId {
    let id = UserId::new();
    let grant = LedgerEntry::new(LedgerKind::Grant, 3, 3, "starter-grant", NOW);
    let new = NewUser {
        id: id.clone(),
        phone: unique_phone(),
        created_at: NOW,
        starter_grant: Some(grant),
        number_key: None,
    };
    store.create_user(&new).await.unwrap();
    id
}

fn unique_transaction() -> String {
    format!("2000{}", facemake::domain::new_id())
}

fn purchase(transaction_id: &str, credits: u64) -> VerifiedPurchase {
    VerifiedPurchase {
        transaction_id: transaction_id.to_owned(),
        original_transaction_id: transaction_id.to_owned(),
        product_id: "credits10".to_owned(),
        credits,
        environment: "Sandbox".to_owned(),
    }
}

/// The whole ledger, newest first, read page by page.
async fn whole_ledger(store: &Arc<dyn Store>, user: &UserId) -> Vec<LedgerEntry> {
    let (mut all, mut before) = (Vec::new(), None::<String>);
    loop {
        let page = store.ledger_page(user, 4, before.as_deref()).await.unwrap();
        before = page.entries.last().map(|e| e.id.clone());
        all.extend(page.entries);
        if !page.more {
            return all;
        }
    }
}

/// The invariant: the ledger sums to the balance, and each entry's balanceAfter is the running sum.
async fn assert_ledger_matches_balance(store: &Arc<dyn Store>, user: &UserId) -> u64 {
    let balance = store.balance(user).await.unwrap();
    let ledger = whole_ledger(store, user).await;
    let sum: i64 = ledger.iter().map(|e| e.amount).sum();
    assert_eq!(sum, balance as i64, "ledger {ledger:#?} sums to the balance");
    let mut running = 0i64;
    for e in ledger.iter().rev() {
        running += e.amount;
        assert_eq!(e.balance_after as i64, running, "balanceAfter of {e:?}");
    }
    balance
}

async fn a_purchase_is_credited_once_and_only_to_its_owner(store: Arc<dyn Store>) {
    let (alice, bob) = (user(&store).await, user(&store).await);
    let tx = unique_transaction();
    let first = store.credit_purchase(&alice, &purchase(&tx, 10), NOW).await.unwrap();
    assert_eq!(first, PurchaseOutcome::Credited { credits_added: 10, debt_paid: 0, balance: 13 });
    let again = store.credit_purchase(&alice, &purchase(&tx, 10), NOW + 1).await.unwrap();
    assert_eq!(again, PurchaseOutcome::AlreadyCredited { credits_added: 10, debt_paid: 0, balance: 13 });
    assert_eq!(store.credit_purchase(&bob, &purchase(&tx, 10), NOW).await.unwrap(), PurchaseOutcome::OtherUser);
    assert_eq!(store.balance(&bob).await.unwrap(), 3);
    assert_eq!(assert_ledger_matches_balance(&store, &alice).await, 13);
    let ledger = whole_ledger(&store, &alice).await;
    assert_eq!(ledger[0].kind, LedgerKind::Purchase);
    assert_eq!(ledger[0].reference, tx);
}

async fn fifty_concurrent_posts_of_one_transaction_credit_it_once(store: Arc<dyn Store>) {
    let alice = user(&store).await;
    let tx = unique_transaction();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (store, alice, tx) = (store.clone(), alice.clone(), tx.clone());
            tokio::spawn(async move { store.credit_purchase(&alice, &purchase(&tx, 10), NOW).await.unwrap() })
        })
        .collect();
    let mut credited = 0;
    for t in tasks {
        match t.await.unwrap() {
            PurchaseOutcome::Credited { .. } => credited += 1,
            PurchaseOutcome::AlreadyCredited { credits_added, balance, .. } => {
                assert_eq!(credits_added, 10);
                assert!(balance == 13, "a repeat sees the credited balance, got {balance}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(credited, 1);
    assert_eq!(assert_ledger_matches_balance(&store, &alice).await, 13);
    assert_eq!(whole_ledger(&store, &alice).await.len(), 2, "grant + one purchase");
}

async fn concurrent_distinct_purchases_all_count(store: Arc<dyn Store>) {
    let alice = user(&store).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, alice) = (store.clone(), alice.clone());
            tokio::spawn(async move { store.credit_purchase(&alice, &purchase(&unique_transaction(), 10), NOW).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.unwrap().unwrap(), PurchaseOutcome::Credited { .. }));
    }
    assert_eq!(assert_ledger_matches_balance(&store, &alice).await, 203);
}

async fn a_refund_takes_back_once_floors_at_zero_and_reverses(store: Arc<dyn Store>) {
    let alice = user(&store).await;
    let tx = unique_transaction();
    store.credit_purchase(&alice, &purchase(&tx, 10), NOW).await.unwrap();
    // Alice spends 12 of her 13 credits; Apple then refunds the 10-credit purchase.
    assert_eq!(store.adjust(&alice, -12, "spent", NOW).await.unwrap(), AdjustOutcome::Applied { balance: 1 });
    let refund = store.refund_purchase(&tx, "n-refund", NOW).await.unwrap();
    assert_eq!(refund, RefundOutcome::Applied { user: alice.clone(), amount: -1, shortfall: 9, balance: 0, debt: 9 });
    let ledger = whole_ledger(&store, &alice).await;
    assert_eq!((ledger[1].kind, ledger[1].amount, ledger[1].shortfall), (LedgerKind::Refund, -1, Some(9)));
    assert_eq!((ledger[0].kind, ledger[0].amount, ledger[0].debt_after), (LedgerKind::Debt, 0, Some(9)));
    // The same notification again, and another refund notification of the same transaction: nothing more.
    assert_eq!(store.refund_purchase(&tx, "n-refund", NOW).await.unwrap(), RefundOutcome::Duplicate);
    assert_eq!(store.refund_purchase(&tx, "n-refund-2", NOW).await.unwrap(), RefundOutcome::NotApplicable);
    assert_eq!(assert_ledger_matches_balance(&store, &alice).await, 0);
    // Apple reverses the refund: what was taken comes back and what was owed is cleared, once.
    let reversal = store.reverse_refund(&tx, "n-reversed", NOW).await.unwrap();
    assert_eq!(reversal, RefundOutcome::Applied { user: alice.clone(), amount: 1, shortfall: 0, balance: 1, debt: 0 });
    assert_eq!(store.reverse_refund(&tx, "n-reversed", NOW).await.unwrap(), RefundOutcome::Duplicate);
    assert_eq!(store.reverse_refund(&tx, "n-reversed-2", NOW).await.unwrap(), RefundOutcome::NotApplicable);
    // A second refund after the reversal applies again.
    let again = store.refund_purchase(&tx, "n-refund-3", NOW).await.unwrap();
    assert_eq!(again, RefundOutcome::Applied { user: alice.clone(), amount: -1, shortfall: 9, balance: 0, debt: 9 });
    assert_eq!(assert_ledger_matches_balance(&store, &alice).await, 0);
    // The purchase itself stays Alice's: posting it again credits nothing.
    assert!(matches!(
        store.credit_purchase(&alice, &purchase(&tx, 10), NOW).await.unwrap(),
        PurchaseOutcome::AlreadyCredited { balance: 0, .. }
    ));
}

async fn a_refund_delivered_twice_concurrently_is_taken_back_once(store: Arc<dyn Store>) {
    let alice = user(&store).await;
    let tx = unique_transaction();
    store.credit_purchase(&alice, &purchase(&tx, 10), NOW).await.unwrap();
    // The same notification delivered many times at once, and distinct notifications for the same refund.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, tx) = (store.clone(), tx.clone());
            let id = if i % 2 == 0 { "n-same".to_owned() } else { format!("n-{i}") };
            tokio::spawn(async move { store.refund_purchase(&tx, &id, NOW).await.unwrap() })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        match t.await.unwrap() {
            RefundOutcome::Applied { amount, .. } => {
                assert_eq!(amount, -10);
                applied += 1;
            }
            RefundOutcome::Duplicate | RefundOutcome::NotApplicable => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(applied, 1);
    assert_eq!(assert_ledger_matches_balance(&store, &alice).await, 3);
}

async fn a_refund_before_the_purchase_blocks_it(store: Arc<dyn Store>) {
    let alice = user(&store).await;
    let tx = unique_transaction();
    assert_eq!(store.refund_purchase(&tx, "n-early", NOW).await.unwrap(), RefundOutcome::UnknownTransaction);
    assert_eq!(store.credit_purchase(&alice, &purchase(&tx, 10), NOW).await.unwrap(), PurchaseOutcome::Revoked);
    assert_eq!(store.reverse_refund(&tx, "n-early-reversed", NOW).await.unwrap(), RefundOutcome::NotApplicable);
    assert_eq!(assert_ledger_matches_balance(&store, &alice).await, 3);
}

async fn adjustments_never_take_the_balance_below_zero(store: Arc<dyn Store>) {
    let alice = user(&store).await;
    assert_eq!(store.adjust(&alice, -4, "too much", NOW).await.unwrap(), AdjustOutcome::Insufficient { balance: 3 });
    assert_eq!(store.adjust(&alice, 5, "support: sorry", NOW).await.unwrap(), AdjustOutcome::Applied { balance: 8 });
    assert_eq!(store.adjust(&alice, -8, "support: abuse", NOW).await.unwrap(), AdjustOutcome::Applied { balance: 0 });
    assert_eq!(store.adjust(&UserId::new(), 5, "nobody", NOW).await.unwrap(), AdjustOutcome::NoSuchUser);
    // Concurrent takes of 1 from a balance of 5: exactly five succeed.
    store.adjust(&alice, 5, "top up", NOW).await.unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (store, alice) = (store.clone(), alice.clone());
            tokio::spawn(async move { store.adjust(&alice, -1, "take", NOW).await.unwrap() })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        if let AdjustOutcome::Applied { .. } = t.await.unwrap() {
            applied += 1;
        }
    }
    assert_eq!(applied, 5);
    assert_eq!(assert_ledger_matches_balance(&store, &alice).await, 0);
}

async fn the_ledger_pages_newest_first_without_gaps(store: Arc<dyn Store>) {
    let alice = user(&store).await;
    for i in 1..=9 {
        store.adjust(&alice, i, &format!("step {i}"), NOW + i).await.unwrap();
    }
    let all = whole_ledger(&store, &alice).await;
    assert_eq!(all.len(), 10);
    let references: Vec<&str> = all.iter().map(|e| e.reference.as_str()).collect();
    let mut expected: Vec<String> = (1..=9).rev().map(|i| format!("step {i}")).collect();
    expected.push("starter-grant".to_owned());
    assert_eq!(references, expected);
    // A page that ends exactly at the end says there is no more.
    let page = store.ledger_page(&alice, 10, None).await.unwrap();
    assert_eq!((page.entries.len(), page.more), (10, false));
    let page = store.ledger_page(&alice, 9, None).await.unwrap();
    assert_eq!((page.entries.len(), page.more), (9, true));
    assert_eq!(assert_ledger_matches_balance(&store, &alice).await, 48);
}

async fn notifications_are_recorded_once(store: Arc<dyn Store>) {
    let id = format!("n-{}", facemake::domain::new_id());
    assert_eq!(store.record_notification(&id, NOW).await.unwrap(), Written::Yes);
    assert_eq!(store.record_notification(&id, NOW).await.unwrap(), Written::Conflict);
}

/// Alice buys 10 (13 in all), spends 12, and Apple refunds the purchase: 1 is taken back and 9 are owed.
async fn in_debt(store: &Arc<dyn Store>) -> (UserId, String) {
    let alice = user(store).await;
    let tx = unique_transaction();
    store.credit_purchase(&alice, &purchase(&tx, 10), NOW).await.unwrap();
    store.adjust(&alice, -12, "spent", NOW).await.unwrap();
    assert!(matches!(
        store.refund_purchase(&tx, &unique_transaction(), NOW).await.unwrap(),
        RefundOutcome::Applied { .. }
    ));
    assert_eq!(store.funds(&alice).await.unwrap(), Funds { balance: 0, debt: 9 });
    (alice, tx)
}

async fn a_refund_of_spent_credits_is_owed_and_the_next_purchase_pays_it_once(store: Arc<dyn Store>) {
    let (alice, _) = in_debt(&store).await;
    let next = unique_transaction();
    let paid = store.credit_purchase(&alice, &purchase(&next, 10), NOW).await.unwrap();
    assert_eq!(paid, PurchaseOutcome::Credited { credits_added: 10, debt_paid: 9, balance: 1 });
    assert_eq!(store.funds(&alice).await.unwrap(), Funds { balance: 1, debt: 0 });
    let ledger = whole_ledger(&store, &alice).await;
    let top: Vec<_> = ledger[..2].iter().map(|e| (e.kind, e.amount, e.balance_after, e.debt_after)).collect();
    assert_eq!(top, [(LedgerKind::Debt, -9, 1, Some(0)), (LedgerKind::Purchase, 10, 10, None)]);
    assert_eq!((ledger[0].reference.as_str(), ledger[1].reference.as_str()), (next.as_str(), next.as_str()));
    // Posted again: nothing more is paid or credited, and the answer repeats what the first post did.
    let again = store.credit_purchase(&alice, &purchase(&next, 10), NOW).await.unwrap();
    assert_eq!(again, PurchaseOutcome::AlreadyCredited { credits_added: 10, debt_paid: 9, balance: 1 });
    // The purchase after that is credited whole.
    let third = store.credit_purchase(&alice, &purchase(&unique_transaction(), 10), NOW).await.unwrap();
    assert_eq!(third, PurchaseOutcome::Credited { credits_added: 10, debt_paid: 0, balance: 11 });
    assert_eq!(assert_ledger_matches_balance(&store, &alice).await, 11);
}

async fn concurrent_purchases_pay_a_debt_exactly_once(store: Arc<dyn Store>) {
    let (alice, _) = in_debt(&store).await;
    // Eight purchases of 2 at once against a debt of 9: 9 is paid in all, whatever the order.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, alice) = (store.clone(), alice.clone());
            tokio::spawn(async move { store.credit_purchase(&alice, &purchase(&unique_transaction(), 2), NOW).await })
        })
        .collect();
    let mut paid = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            PurchaseOutcome::Credited { credits_added: 2, debt_paid, .. } => paid += debt_paid,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(paid, 9);
    assert_eq!(store.funds(&alice).await.unwrap(), Funds { balance: 7, debt: 0 });
    assert_eq!(assert_ledger_matches_balance(&store, &alice).await, 7);
}

async fn concurrent_refunds_of_spent_purchases_owe_both(store: Arc<dyn Store>) {
    let alice = user(&store).await;
    let (a, b) = (unique_transaction(), unique_transaction());
    store.credit_purchase(&alice, &purchase(&a, 10), NOW).await.unwrap();
    store.credit_purchase(&alice, &purchase(&b, 5), NOW).await.unwrap();
    store.adjust(&alice, -18, "spent", NOW).await.unwrap();
    // Both refunds at once on a balance of 0: the balance does not change, so only the debt's own
    // condition keeps one from overwriting the other.
    let (ra, rb) = tokio::join!(store.refund_purchase(&a, "n-a", NOW), store.refund_purchase(&b, "n-b", NOW));
    assert!(matches!(ra.unwrap(), RefundOutcome::Applied { shortfall: 10, .. }));
    assert!(matches!(rb.unwrap(), RefundOutcome::Applied { shortfall: 5, .. }));
    assert_eq!(store.funds(&alice).await.unwrap(), Funds { balance: 0, debt: 15 });
    assert_eq!(assert_ledger_matches_balance(&store, &alice).await, 0);
}

async fn a_reversal_gives_back_what_was_paid_and_clears_what_is_owed(store: Arc<dyn Store>) {
    let (alice, refunded) = in_debt(&store).await;
    // A purchase of 4 pays 4 of the 9 owed; then Apple reverses the refund.
    let paid = store.credit_purchase(&alice, &purchase(&unique_transaction(), 4), NOW).await.unwrap();
    assert_eq!(paid, PurchaseOutcome::Credited { credits_added: 4, debt_paid: 4, balance: 0 });
    let reversal = store.reverse_refund(&refunded, "n-reversed", NOW).await.unwrap();
    // The 5 still owed are cleared; the 1 taken and the 4 paid come back.
    assert_eq!(reversal, RefundOutcome::Applied { user: alice.clone(), amount: 5, shortfall: 0, balance: 5, debt: 0 });
    let ledger = whole_ledger(&store, &alice).await;
    assert_eq!((ledger[0].kind, ledger[0].debt_after), (LedgerKind::Reversal, Some(0)));
    assert_eq!(store.funds(&alice).await.unwrap(), Funds { balance: 5, debt: 0 });
    assert_eq!(assert_ledger_matches_balance(&store, &alice).await, 5);
}
