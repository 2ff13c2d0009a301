//! Loads the demo district ([`district::demo`]) through the writer, the
//! same way an admin's commands arrive.

use district::demo::{commands, detroit};

use crate::writer::District;
use crate::NodeError;

pub use district::demo::DETROIT_JSON;

/// Loads the demo district unless the log already has events.
pub async fn seed_if_empty(district: &District) -> Result<bool, NodeError> {
    if district.state().last_seq() > 0 {
        return Ok(false);
    }
    for cmd in commands(detroit().map_err(|e| NodeError::Demo(e.to_string()))?) {
        district
            .submit(cmd)
            .await
            .map_err(|e| NodeError::Demo(e.to_string()))?;
    }
    tracing::info!(events = district.state().last_seq(), "demo district loaded");
    Ok(true)
}
