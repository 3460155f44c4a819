//! Refusal alerts.
