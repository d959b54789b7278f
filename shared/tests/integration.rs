//! Every integration test of the facemake library's crate, in one test binary: each binary links the AWS SDK, so
//! one binary instead of one per file saves its link time and tens of MB of disk per file. A file in
//! tests/ that is not a module here would never run: infra/scripts/check-test-targets.py fails on one.

mod account_deletion;
mod apns;
mod callbacks;
mod characters;
mod consumption;
mod contract;
mod credits_store;
mod devices;
mod generations;
mod logs;
mod metrics;
mod number_marks;
mod openai_callbacks;
mod providers;
mod purchases;
mod rules;
mod s3_objects;
mod sign_in;
