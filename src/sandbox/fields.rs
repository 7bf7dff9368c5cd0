//! `GET /locations/:locationId/customFields`: the location's custom field definitions
//! (`CustomFieldSchema` of apps/locations.json), one per field the contacts' `customFields`
//! values refer to, plus an opportunity field that `model=contact` leaves out.

use serde_json::{Value, json};

use super::data::{LocInfo, mix_seed};
use super::vocab::CUSTOM_VALUES;

/// (name, fieldKey suffix, dataType) of the contact fields, in `LocInfo.field_ids` order.
const CONTACT_FIELDS: [(&str, &str, &str); 5] = [
    ("Membership tier", "membership_tier", "SINGLE_OPTIONS"),
    ("Lifetime orders", "lifetime_orders", "NUMERICAL"),
    ("Renewal date", "renewal_date", "DATE"),
    ("Contact preference", "contact_preference", "LARGE_TEXT"),
    ("Newsletter opt-in", "newsletter_opt_in", "RADIO"),
];

/// Which definitions a `model` query parameter asks for; `Err` holds the 422 message.
pub(super) fn parse_model(params: &[(String, String)]) -> Result<(bool, bool), String> {
    let model = params
        .iter()
        .find(|(k, _)| k == "model")
        .map(|(_, v)| v.as_str());
    match model {
        None | Some("all") => Ok((true, true)),
        Some("contact") => Ok((true, false)),
        Some("opportunity") => Ok((false, true)),
        Some(_) => {
            Err("model must be one of the following values: contact, opportunity, all".into())
        }
    }
}

/// The opportunity field's id: derived from the location, so it draws nothing from the
/// location's random stream (which would change every generated contact).
fn opportunity_field_id(loc: &LocInfo) -> String {
    format!("opp0{:016x}", mix_seed(0x00F1_E1D5, &loc.id))
}

/// `{"customFields":[...]}` for the models asked for.
pub(super) fn body(loc: &LocInfo, (contact, opportunity): (bool, bool)) -> Value {
    let mut fields = Vec::new();
    if contact {
        for (i, (id, (name, key, data_type))) in
            loc.field_ids.iter().zip(CONTACT_FIELDS).enumerate()
        {
            let options = matches!(data_type, "SINGLE_OPTIONS" | "RADIO")
                .then(|| CUSTOM_VALUES.get(i).copied().unwrap_or_default());
            let mut f = json!({
                "id": id,
                "name": name,
                "fieldKey": format!("contact.{key}"),
                "placeholder": name,
                "dataType": data_type,
                "position": i * 50,
                "isAllowedCustomOption": false,
                "isMultiFileAllowed": false,
                "maxFileLimit": 0,
                "locationId": loc.id,
                "model": "contact",
            });
            if let Some(options) = options {
                f["picklistOptions"] = json!(options);
            }
            fields.push(f);
        }
    }
    if opportunity {
        fields.push(json!({
            "id": opportunity_field_id(loc),
            "name": "Deal source",
            "fieldKey": "opportunity.deal_source",
            "placeholder": "Where the deal came from",
            "dataType": "TEXT",
            "position": 0,
            "locationId": loc.id,
            "model": "opportunity",
        }));
    }
    json!({ "customFields": fields })
}
