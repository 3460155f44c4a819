//! Reports: plain-data job and error reports, and their mailing (lettre).
//!
//! The client builds a [`JobReport`] for every run and an [`ErrorReport`] when anything failed;
//! the server builds a [`RefusalAlert`] from coalesced refusals. Each renders to a subject and a
//! plain-text body, and a [`Mailer`] built from the `[mail]` table sends it.

pub mod mailer;
pub mod text;

pub use mailer::Mailer;
pub use text::{
    ErrorReport, Failure, JobReport, RefusalAlert, RunOutcome, StepReport, StepStatus,
    human_duration,
};
