//! Geography: validated points, great-circle distance, geohash cells and the
//! district (a set of geohash prefixes) a region node serves.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Precision used to store a fridge's position (≈ 4.8 m × 4.8 m cells);
/// DESIGN.md asks for at least 8.
pub const FRIDGE_GEOHASH_PRECISION: usize = 9;
/// Mean Earth radius used for haversine distances, in metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A WGS84 position. Construct through [`GeoPoint::new`] so it is always valid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeoError {
    #[error("lat must be a number between -90 and 90")]
    Latitude,
    #[error("lon must be a number between -180 and 180")]
    Longitude,
}

impl GeoPoint {
    pub fn new(lat: f64, lon: f64) -> Result<Self, GeoError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(GeoError::Latitude);
        }
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(GeoError::Longitude);
        }
        Ok(GeoPoint { lat, lon })
    }

    /// Great-circle distance in metres (haversine; good to ~0.5 % which is
    /// plenty for "nearest fridge").
    pub fn distance_m(&self, other: &GeoPoint) -> f64 {
        let (la1, la2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = la2 - la1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }

    /// Geohash of this point at `precision` characters.
    pub fn geohash(&self, precision: usize) -> String {
        // Encoding a validated point cannot fail; the fallback keeps this total.
        geohash::encode(
            geohash::Coord {
                x: self.lon,
                y: self.lat,
            },
            precision,
        )
        .unwrap_or_default()
    }
}

/// The geohash prefixes a district owns. A point belongs to the district when
/// its geohash starts with any of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistrictArea {
    pub prefixes: Vec<String>,
}

impl DistrictArea {
    pub fn new(prefixes: Vec<String>) -> Result<Self, ValidationError> {
        if prefixes.is_empty() {
            return Err(ValidationError::NoGeohashPrefix);
        }
        for p in &prefixes {
            let ok = !p.is_empty()
                && p.len() <= FRIDGE_GEOHASH_PRECISION
                && p.bytes()
                    .all(|b| b"0123456789bcdefghjkmnpqrstuvwxyz".contains(&b));
            if !ok {
                return Err(ValidationError::GeohashPrefix { prefix: p.clone() });
            }
        }
        Ok(DistrictArea { prefixes })
    }

    pub fn contains(&self, point: &GeoPoint) -> bool {
        let hash = point.geohash(FRIDGE_GEOHASH_PRECISION);
        self.prefixes.iter().any(|p| hash.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_out_of_range_and_nan() {
        assert_eq!(GeoPoint::new(90.1, 0.0), Err(GeoError::Latitude));
        assert_eq!(GeoPoint::new(f64::NAN, 0.0), Err(GeoError::Latitude));
        assert_eq!(GeoPoint::new(0.0, -180.5), Err(GeoError::Longitude));
        assert_eq!(GeoPoint::new(0.0, f64::INFINITY), Err(GeoError::Longitude));
    }

    #[test]
    fn distance_between_two_detroit_landmarks() {
        // Campus Martius to the Fox Theatre: about 1.1 km.
        let a = GeoPoint::new(42.3316, -83.0466).unwrap();
        let b = GeoPoint::new(42.3384, -83.0527).unwrap();
        let d = a.distance_m(&b);
        assert!((850.0..1_000.0).contains(&d), "{d}");
        assert_eq!(a.distance_m(&a), 0.0);
    }

    #[test]
    fn district_membership_by_prefix() {
        let detroit = DistrictArea::new(vec!["dpsbv".into(), "dpsby".into()]).unwrap();
        let downtown = GeoPoint::new(42.3316, -83.0466).unwrap();
        assert_eq!(downtown.geohash(9), "dpsby4pr3");
        assert!(detroit.contains(&downtown));
        let dearborn = GeoPoint::new(42.3223, -83.1763).unwrap();
        assert!(!detroit.contains(&dearborn));
        let nyc = GeoPoint::new(40.7128, -74.0060).unwrap();
        assert!(!detroit.contains(&nyc));
        assert_eq!(
            DistrictArea::new(vec!["DPS".into()]),
            Err(ValidationError::GeohashPrefix {
                prefix: "DPS".into()
            })
        );
        assert_eq!(
            DistrictArea::new(vec![]),
            Err(ValidationError::NoGeohashPrefix)
        );
    }
}
