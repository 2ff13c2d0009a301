//! The catalog: meals and fridges, their definitions and the decisions that
//! change them, and manual stock corrections (which are admin catalog
//! commands, recorded as stock events).

use chrono::Duration;
use imbl::OrdMap;
use protocol::catalog::{Fridge, FridgeSpec, FridgeStatus, Meal, MealSpec, StockSpec};
use protocol::events::StockSource;
use protocol::geo::FRIDGE_GEOHASH_PRECISION;
use protocol::{Event, FridgeId, MealId};

use super::{Context, DistrictState, DomainError};

/// The district's meals and fridges.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Catalog {
    meals: OrdMap<MealId, Meal>,
    fridges: OrdMap<FridgeId, Fridge>,
}

impl Catalog {
    pub fn meal(&self, meal_id: &str) -> Option<&Meal> {
        self.meals.get(meal_id)
    }

    pub fn meals(&self) -> &OrdMap<MealId, Meal> {
        &self.meals
    }

    pub fn fridge(&self, fridge_id: &str) -> Option<&Fridge> {
        self.fridges.get(fridge_id)
    }

    pub fn fridges(&self) -> &OrdMap<FridgeId, Fridge> {
        &self.fridges
    }

    /// Whether the fridge exists and has `status`.
    pub fn fridge_is(&self, fridge_id: &str, status: FridgeStatus) -> bool {
        self.fridge(fridge_id).is_some_and(|f| f.status == status)
    }

    /// How long a unit of the meal keeps (zero for an unknown meal, so its
    /// units count as expired at once rather than never).
    pub fn shelf_life(&self, meal_id: &str) -> Duration {
        self.meal(meal_id)
            .map(|m| Duration::hours(i64::from(m.spec.shelf_life_hours)))
            .unwrap_or_else(Duration::zero)
    }

    /// Whether any meal of the district is cooked by `kitchen_id`.
    pub fn has_kitchen(&self, kitchen_id: &str) -> bool {
        self.meals.values().any(|m| m.spec.kitchen_id == kitchen_id)
    }

    /// Sets a fridge's operational status; returns whether it changed.
    pub(crate) fn set_fridge_status(&mut self, fridge_id: &str, status: FridgeStatus) -> bool {
        let Some(mut fridge) = self.fridges.get(fridge_id).cloned() else {
            return false;
        };
        if fridge.status == status {
            return false;
        }
        fridge.status = status;
        self.fridges.insert(fridge.fridge_id.clone(), fridge);
        true
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum CatalogCommand {
    DefineMeal {
        meal_id: MealId,
        spec: MealSpec,
    },
    DiscontinueMeal {
        meal_id: MealId,
    },
    RegisterFridge {
        fridge_id: FridgeId,
        spec: FridgeSpec,
    },
    SetStock {
        fridge_id: FridgeId,
        spec: StockSpec,
    },
}

fn invalid(e: impl std::fmt::Display) -> DomainError {
    DomainError::Invalid(e.to_string())
}

pub fn decide(
    state: &DistrictState,
    cmd: CatalogCommand,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    match cmd {
        CatalogCommand::DefineMeal { meal_id, spec } => {
            spec.validate().map_err(invalid)?;
            if state.catalog.meal(&meal_id).map(|m| &m.spec) == Some(&spec) {
                return Ok(vec![]); // Same definition again: nothing happened.
            }
            Ok(vec![Event::MealDefined {
                meal: Meal { meal_id, spec },
            }])
        }
        CatalogCommand::DiscontinueMeal { meal_id } => {
            if state.catalog.meal(&meal_id).is_none() {
                return Err(DomainError::UnknownMeal(meal_id));
            }
            Ok(vec![Event::MealDiscontinued { meal_id }])
        }
        CatalogCommand::RegisterFridge { fridge_id, spec } => {
            let position = spec.validate().map_err(invalid)?;
            if !ctx.area.contains(&position) {
                return Err(DomainError::OutsideDistrict {
                    lat: spec.lat,
                    lon: spec.lon,
                });
            }
            spec.vendor
                .parse::<fridge_acl::Dialect>()
                .map_err(|e| invalid(e.to_string()))?;
            // Re-registering keeps the operational status the fridge has.
            let status = state
                .catalog
                .fridge(&fridge_id)
                .map(|f| f.status)
                .unwrap_or(FridgeStatus::Online);
            let fridge = Fridge {
                fridge_id,
                name: spec.name,
                address: spec.address,
                geohash: position.geohash(FRIDGE_GEOHASH_PRECISION),
                position,
                vendor: spec.vendor,
                status,
            };
            let unchanged =
                state.catalog.fridge(&fridge.fridge_id) == Some(&fridge) && spec.secret.is_none();
            if unchanged {
                return Ok(vec![]);
            }
            Ok(vec![Event::FridgeRegistered {
                fridge,
                secret: spec.secret,
            }])
        }
        CatalogCommand::SetStock { fridge_id, spec } => {
            spec.validate().map_err(invalid)?;
            if state.catalog.fridge(&fridge_id).is_none() {
                return Err(DomainError::UnknownFridge(fridge_id));
            }
            for c in &spec.counts {
                if state.catalog.meal(&c.meal_id).is_none() {
                    return Err(DomainError::UnknownMeal(c.meal_id.clone()));
                }
            }
            Ok(spec
                .counts
                .into_iter()
                .filter(|c| state.stock_level(&fridge_id, &c.meal_id).on_hand != c.units)
                .map(|c| Event::MealStockUpdated {
                    fridge_id: fridge_id.clone(),
                    meal_id: c.meal_id,
                    on_hand: c.units,
                    source: StockSource::Manual,
                })
                .collect())
        }
    }
}

/// Applies catalog events; returns whether the catalog view changed.
pub(crate) fn evolve(state: &mut DistrictState, event: &Event) -> bool {
    match event {
        Event::MealDefined { meal } => {
            state
                .catalog
                .meals
                .insert(meal.meal_id.clone(), meal.clone());
            true
        }
        Event::MealDiscontinued { meal_id } => {
            state.catalog.meals.remove(meal_id);
            true
        }
        Event::FridgeRegistered { fridge, secret } => {
            if let Some(secret) = secret {
                state.links.set_secret(&fridge.fridge_id, secret);
            }
            state.links.forget_unreadable_cursor(&fridge.fridge_id);
            state
                .catalog
                .fridges
                .insert(fridge.fridge_id.clone(), fridge.clone());
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::catalog::StockCount;
    use protocol::geo::DistrictArea;
    use protocol::DistrictId;

    fn ctx() -> Context {
        Context {
            district_id: DistrictId::from_static("d"),
            area: DistrictArea::new(vec!["dpsby".into()]).unwrap(),
            now: crate::given::t0(),
            policy: Default::default(),
            fridges: Default::default(),
            utc_offset_minutes: 0,
            schedule: Default::default(),
        }
    }

    fn spec() -> MealSpec {
        crate::demo::plain_meal(1000)
    }

    fn apply(state: &mut DistrictState, events: Vec<Event>) {
        crate::given::apply(state, events, crate::given::t0());
    }

    #[test]
    fn defining_the_same_meal_twice_records_nothing_new() {
        let mut s = DistrictState::default();
        let cmd = CatalogCommand::DefineMeal {
            meal_id: MealId::from_static("m-1"),
            spec: spec(),
        };
        let events = decide(&s, cmd.clone(), &ctx()).unwrap();
        assert_eq!(events.len(), 1);
        apply(&mut s, events);
        assert!(decide(&s, cmd, &ctx()).unwrap().is_empty());
    }

    #[test]
    fn stock_only_records_counts_that_changed() {
        let mut s = DistrictState::default();
        let defined = decide(
            &s,
            CatalogCommand::DefineMeal {
                meal_id: MealId::from_static("m-1"),
                spec: spec(),
            },
            &ctx(),
        )
        .unwrap();
        apply(&mut s, defined);
        let fridge = crate::demo::plain_fridge("F");
        let registered = decide(
            &s,
            CatalogCommand::RegisterFridge {
                fridge_id: FridgeId::from_static("f-1"),
                spec: fridge,
            },
            &ctx(),
        )
        .unwrap();
        apply(&mut s, registered);
        let set = |units| CatalogCommand::SetStock {
            fridge_id: FridgeId::from_static("f-1"),
            spec: StockSpec {
                counts: vec![StockCount {
                    meal_id: MealId::from_static("m-1"),
                    units,
                }],
            },
        };
        let first = decide(&s, set(4), &ctx()).unwrap();
        assert_eq!(first.len(), 1);
        apply(&mut s, first);
        assert_eq!(s.stock_level("f-1", "m-1").available(), 4);
        assert!(decide(&s, set(4), &ctx()).unwrap().is_empty());
    }

    #[test]
    fn fridges_outside_the_district_are_refused() {
        let s = DistrictState::default();
        let nyc = FridgeSpec {
            name: "NYC".into(),
            address: String::new(),
            lat: 40.71,
            lon: -74.0,
            vendor: "frostline-json".into(),
            secret: None,
        };
        let r = decide(
            &s,
            CatalogCommand::RegisterFridge {
                fridge_id: FridgeId::from_static("f-1"),
                spec: nyc,
            },
            &ctx(),
        );
        assert!(matches!(r, Err(DomainError::OutsideDistrict { .. })));
    }

    #[test]
    fn fridges_with_an_unknown_dialect_are_refused() {
        let spec = FridgeSpec {
            name: "F".into(),
            address: String::new(),
            lat: 42.3316,
            lon: -83.0466,
            vendor: "acme-xml".into(),
            secret: None,
        };
        let r = decide(
            &DistrictState::default(),
            CatalogCommand::RegisterFridge {
                fridge_id: FridgeId::from_static("f-1"),
                spec,
            },
            &ctx(),
        );
        assert!(
            matches!(&r, Err(DomainError::Invalid(m)) if m.contains("acme-xml")),
            "{r:?}"
        );
    }

    #[test]
    fn discontinuing_an_unknown_meal_is_an_error() {
        let r = decide(
            &DistrictState::default(),
            CatalogCommand::DiscontinueMeal {
                meal_id: MealId::from_static("m-x"),
            },
            &ctx(),
        );
        assert_eq!(r, Err(DomainError::UnknownMeal(MealId::from_static("m-x"))));
    }
}
