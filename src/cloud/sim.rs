//! The in-memory simulated organization (placeholder; being implemented).
