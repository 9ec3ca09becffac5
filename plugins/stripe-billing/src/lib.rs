//! `stripe-billing`: keeps each Stripe customer's subscription state and
//! invoice counts in the key-value store, handling every event exactly once.
//!
//! Keys:
//! - `customer/<cus>`: JSON `{subscription, status, plan, updated_at}`
//! - `customer/<cus>/paid_invoices`, `customer/<cus>/failed_payments`: counters
//! - `customer/<cus>/last_invoice`: id of the last paid invoice
//! - `seen/<event id>`: marks an event as handled, so a retry or a replay of
//!   an already handled event changes nothing
//!
//! An example to copy: idempotency on hookhost's event id, JSON payloads
//! read with `pointer`, and state stored as JSON.

use hookhost_sdk::serde_json::{json, Value};
use hookhost_sdk::{export, kv, log, Error, Event, Handler, Info};

struct StripeBilling;

impl Handler for StripeBilling {
    fn describe() -> Info {
        Info::new("stripe-billing", env!("CARGO_PKG_VERSION"))
            .subscribe("stripe:customer.subscription.*")
            .subscribe("stripe:invoice.*")
    }

    fn handle(event: Event) -> Result<(), Error> {
        let seen = format!("seen/{}", event.id);
        if kv::get(&seen)?.is_some() {
            log::info("duplicate event, skipped", &[("kind", &event.kind)]);
            return Ok(());
        }

        let payload: Value = event.json()?;
        let obj = payload.pointer("/data/object").unwrap_or(&Value::Null);
        let customer = obj
            .get("customer")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::reject("no data.object.customer"))?;
        let key = format!("customer/{customer}");

        match event.kind.as_str() {
            kind @ ("customer.subscription.created"
            | "customer.subscription.updated"
            | "customer.subscription.deleted") => {
                let status = if kind == "customer.subscription.deleted" {
                    Value::from("canceled")
                } else {
                    obj.get("status").cloned().unwrap_or(Value::Null)
                };
                let state = json!({
                    "subscription": obj.get("id"),
                    "status": status,
                    "plan": obj.pointer("/items/data/0/price/id"),
                    "updated_at": event.received_at,
                });
                kv::set_json(&key, &state)?;
            }
            "invoice.paid" => {
                kv::increment(&format!("{key}/paid_invoices"), 1)?;
                let invoice = obj.get("id").and_then(Value::as_str).unwrap_or("");
                kv::set_str(&format!("{key}/last_invoice"), invoice)?;
            }
            "invoice.payment_failed" => {
                kv::increment(&format!("{key}/failed_payments"), 1)?;
            }
            _ => log::info("ignored", &[("kind", &event.kind)]),
        }

        kv::set_str(&seen, "1")?;
        log::info("handled", &[("customer", customer), ("kind", &event.kind)]);
        Ok(())
    }
}

export!(StripeBilling);
