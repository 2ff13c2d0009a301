//! Pure pricing (being written).
