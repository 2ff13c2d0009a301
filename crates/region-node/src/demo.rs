//! Loads the demo district ([`district::demo`]) through the writer, the
//! same way an admin's commands arrive.

use district::demo::{commands, for_district};

use crate::writer::District;
use crate::NodeError;

/// Loads the demo data of `district_id` ([`district::demo::for_district`])
/// unless the log already has events.
pub async fn seed_if_empty(district: &District, district_id: &str) -> Result<bool, NodeError> {
    if district.state().last_seq() > 0 {
        return Ok(false);
    }
    let data = for_district(district_id).map_err(|e| NodeError::Demo(e.to_string()))?;
    for cmd in commands(data) {
        district
            .submit(cmd)
            .await
            .map_err(|e| NodeError::Demo(e.to_string()))?;
    }
    tracing::info!(events = district.state().last_seq(), "demo district loaded");
    Ok(true)
}
