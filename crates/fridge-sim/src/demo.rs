//! The demo district file (`deploy/demo/detroit.json`) read as fridges the
//! simulator can play: id, dialect (`vendor`), secret, and the stock each
//! fridge starts with.
//!
//! Only the fields the simulator needs are read; the file's other fields
//! (meal descriptions, nutrition) are ignored.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use fridge_acl::{Dialect, FridgeId, MealId};
use serde::Deserialize;

use crate::client::SimError;
use crate::fridge::{MealCounts, SimFridge};

#[derive(Deserialize)]
struct DemoFile {
    #[serde(default)]
    meals: Vec<DemoMeal>,
    fridges: Vec<DemoFridgeRaw>,
    #[serde(default)]
    stock: Vec<DemoStock>,
}

#[derive(Deserialize)]
struct DemoMeal {
    meal_id: MealId,
}

#[derive(Deserialize)]
struct DemoFridgeRaw {
    fridge_id: FridgeId,
    vendor: String,
    #[serde(default)]
    secret: Option<String>,
}

#[derive(Deserialize)]
struct DemoStock {
    fridge_id: FridgeId,
    counts: Vec<DemoCount>,
}

#[derive(Deserialize)]
struct DemoCount {
    meal_id: MealId,
    units: u32,
}

/// A demo fridge: who it is and what it holds at the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoFridge {
    pub fridge: SimFridge,
    /// Units per meal, zero counts dropped.
    pub stock: MealCounts,
}

/// The demo district: its fridges (in file order) and meal ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demo {
    pub fridges: Vec<DemoFridge>,
    pub meal_ids: Vec<MealId>,
}

impl Demo {
    pub fn load(path: &Path) -> Result<Demo, SimError> {
        let text = std::fs::read(path)
            .map_err(|e| SimError::Demo(format!("cannot read {}: {e}", path.display())))?;
        Demo::from_json(&text).map_err(|e| SimError::Demo(format!("{}: {e}", path.display())))
    }

    pub fn from_json(text: &[u8]) -> Result<Demo, String> {
        let file: DemoFile = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let mut stock: BTreeMap<FridgeId, MealCounts> = BTreeMap::new();
        for s in file.stock {
            let counts = stock.entry(s.fridge_id).or_default();
            for c in s.counts.into_iter().filter(|c| c.units > 0) {
                counts.insert(c.meal_id, c.units);
            }
        }
        let fridges = file
            .fridges
            .into_iter()
            .map(|f| {
                let dialect = Dialect::from_str(&f.vendor)
                    .map_err(|e| format!("fridge {}: {e}", f.fridge_id))?;
                let secret = f
                    .secret
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| format!("fridge {} has no secret", f.fridge_id))?;
                Ok(DemoFridge {
                    stock: stock.remove(&f.fridge_id).unwrap_or_default(),
                    fridge: SimFridge::new(f.fridge_id, dialect, secret),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Demo {
            fridges,
            meal_ids: file.meals.into_iter().map(|m| m.meal_id).collect(),
        })
    }

    /// The demo fridge with this id.
    pub fn fridge(&self, fridge_id: &str) -> Option<&DemoFridge> {
        self.fridges.iter().find(|f| f.fridge.id == fridge_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_shipped_demo_district() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/demo/detroit.json");
        let demo = Demo::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(demo.fridges.len(), 12);
        assert_eq!(demo.meal_ids.len(), 30);
        let f = demo
            .fridge("f-campus-martius")
            .unwrap_or_else(|| panic!("f-campus-martius missing"));
        assert_eq!(f.fridge.dialect, Dialect::ColdlineLines);
        assert_eq!(f.fridge.seq, 0);
        assert_eq!(f.stock.get("m-greek-salad"), Some(&8));
        assert!(!f.stock.contains_key("m-brisket-sandwich"), "0 dropped");
        assert!(demo
            .fridges
            .iter()
            .any(|f| f.fridge.dialect == Dialect::FrostlineJson));
    }

    #[test]
    fn refuses_unknown_vendors_and_missing_secrets() {
        let bad_vendor = br#"{"fridges":[{"fridge_id":"f-1","vendor":"icebox","secret":"s"}]}"#;
        assert!(Demo::from_json(bad_vendor).is_err());
        let no_secret = br#"{"fridges":[{"fridge_id":"f-1","vendor":"coldline-lines"}]}"#;
        assert!(Demo::from_json(no_secret).is_err());
    }
}
