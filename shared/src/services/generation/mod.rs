//! The generation pipeline: uploads, starting a paid generation, reading and deleting them (the generate
//! function, [`start`]), processing a job (the worker, [`worker`]) and failing jobs that outlived their deadline
//! (the reconciler, [`reconcile`]).

pub mod callback;
mod reconcile;
pub mod start;
pub mod worker;

pub use start::*;
pub use worker::*;

// What the user reads when a job fails (the credits are always given back).
pub const REASON_BUSY: &str = "The image service is busy right now. Your credits were refunded; please try again.";
pub const REASON_MISSING_UPLOAD: &str =
    "The photo for this generation was not found (uploads are kept for a day). Your credits were refunded.";
pub const REASON_MISSING_SOURCE: &str =
    "The character or generation this was made from was deleted before it rendered. Your credits were refunded.";
pub const REASON_TIMED_OUT: &str = "This generation took too long and was stopped. Your credits were refunded.";
pub const REASON_UNAVAILABLE: &str = "This style is temporarily unavailable. Your credits were refunded.";
