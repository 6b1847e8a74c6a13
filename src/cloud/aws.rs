//! The AWS implementation of the cloud port (placeholder; being implemented).
