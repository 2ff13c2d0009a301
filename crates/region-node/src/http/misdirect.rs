//! Requests naming a fridge another district has: answered `421
//! misdirected` with that district and its node's URL (the same body as
//! for a point, `ApiError::misdirected`), so a thin client follows it.
//! The owner comes from the region directory, where each district lists
//! its fridges (`fleet::directory::MAX_LISTED_FRIDGES`). A fridge nobody
//! lists is left to the handler: its usual `404 unknown_fridge`.

use super::error::ApiError;
use super::AppState;

/// `Err(421)` if `fridge_id` is not this district's and another district
/// lists it; `Ok` otherwise (a fridge here, or one nobody has).
pub fn fridge_here(app: &AppState, fridge_id: &str) -> Result<(), ApiError> {
    let state = app.district.state();
    if state.catalog().fridge(fridge_id).is_some() {
        return Ok(());
    }
    let Some(fleet) = &app.fleet else {
        return Ok(());
    };
    // Not an id, so nobody's fridge.
    let Ok(id) = fridge_id.parse() else {
        return Ok(());
    };
    match fleet.fridge_owner(&id) {
        Some(owner) => Err(ApiError::misdirected(
            owner.district_id.as_str(),
            &owner.url,
            &format!("fridge {fridge_id}"),
        )),
        None => Ok(()),
    }
}
