//! What a contact query asks for, independent of who asks: the local API's `POST /contacts/search`
//! body, the legacy list, and the CLI's filters all become a [`ContactQuery`], which `store`
//! answers. Text comparisons are case-insensitive (Unicode lowercase) except on `id`, as
//! HighLevel's search does.

/// A contact field a filter can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Id,
    FirstName,
    LastName,
    Name,
    Email,
    Phone,
    CompanyName,
    Tags,
    Type,
    Source,
    AssignedTo,
    BusinessId,
    Country,
    City,
    State,
    PostalCode,
    Address1,
    Timezone,
    Website,
    Dnd,
    DateAdded,
    DateUpdated,
    LastActivity,
}

/// What kind of value a field holds, which decides the operators it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Tags,
    Bool,
    Date,
}

impl Field {
    /// Every field, in the order HighLevel's docs list them.
    pub const ALL: [Field; 23] = [
        Field::Id,
        Field::FirstName,
        Field::LastName,
        Field::Name,
        Field::Email,
        Field::Phone,
        Field::CompanyName,
        Field::Tags,
        Field::Type,
        Field::Source,
        Field::AssignedTo,
        Field::BusinessId,
        Field::Country,
        Field::City,
        Field::State,
        Field::PostalCode,
        Field::Address1,
        Field::Timezone,
        Field::Website,
        Field::Dnd,
        Field::DateAdded,
        Field::DateUpdated,
        Field::LastActivity,
    ];

    /// The field's name in HighLevel's contact JSON.
    pub fn json_name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::FirstName => "firstName",
            Field::LastName => "lastName",
            Field::Name => "name",
            Field::Email => "email",
            Field::Phone => "phone",
            Field::CompanyName => "companyName",
            Field::Tags => "tags",
            Field::Type => "type",
            Field::Source => "source",
            Field::AssignedTo => "assignedTo",
            Field::BusinessId => "businessId",
            Field::Country => "country",
            Field::City => "city",
            Field::State => "state",
            Field::PostalCode => "postalCode",
            Field::Address1 => "address1",
            Field::Timezone => "timezone",
            Field::Website => "website",
            Field::Dnd => "dnd",
            Field::DateAdded => "dateAdded",
            Field::DateUpdated => "dateUpdated",
            Field::LastActivity => "lastActivity",
        }
    }

    /// Parses a field name: the JSON names plus HighLevel's `*LowerCase` aliases.
    pub fn parse(name: &str) -> Option<Field> {
        let alias = match name {
            "firstNameLowerCase" => Some(Field::FirstName),
            "lastNameLowerCase" => Some(Field::LastName),
            "fullNameLowerCase" => Some(Field::Name),
            "emailLowerCase" => Some(Field::Email),
            _ => None,
        };
        alias.or_else(|| Field::ALL.into_iter().find(|f| f.json_name() == name))
    }

    pub fn kind(self) -> FieldKind {
        match self {
            Field::Tags => FieldKind::Tags,
            Field::Dnd => FieldKind::Bool,
            Field::DateAdded | Field::DateUpdated | Field::LastActivity => FieldKind::Date,
            _ => FieldKind::Text,
        }
    }
}

/// The bounds of a `range` filter, in ms since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub gte: Option<i64>,
    pub gt: Option<i64>,
    pub lte: Option<i64>,
    pub lt: Option<i64>,
}

/// A comparison value, already normalised for its field's kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// Any of these strings; lowercased unless the field is `id`.
    Text(Vec<String>),
    Bool(bool),
    /// ms since the epoch.
    Date(i64),
}

/// An operator with its operand.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Eq(Operand),
    NotEq(Operand),
    /// Substring (lowercased needle); on tags, any tag containing it.
    Contains(String),
    NotContains(String),
    /// Present and not empty.
    Exists,
    NotExists,
    Range(Range),
}

/// A filter: one condition, or an AND / OR group of filters.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Cond { field: Field, op: Op },
    Group { any: bool, filters: Vec<Filter> },
}

/// A field results can be ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortField {
    DateAdded,
    DateUpdated,
    FirstName,
    LastName,
    Email,
    CompanyName,
}

impl SortField {
    pub fn is_date(self) -> bool {
        matches!(self, SortField::DateAdded | SortField::DateUpdated)
    }
}

/// One ordering key. Missing values sort last in either direction; ties are broken by contact
/// id in the direction of the last key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    pub field: SortField,
    pub desc: bool,
}

/// A contact's value for one sort key, as the `searchAfter` cursor carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SortValue {
    Ms(i64),
    /// Lowercased text.
    Text(String),
    Null,
}

/// A search over one location's live contacts.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactQuery {
    pub location: String,
    /// Only contacts of this business (its id exactly, as `GET /contacts/business/:id` takes it).
    pub business: Option<String>,
    /// All must hold.
    pub filters: Vec<Filter>,
    /// Free text (lowercased): a substring of the name, email, phone or company name.
    pub text: Option<String>,
    /// At least one key.
    pub sort: Vec<Sort>,
    /// Start strictly after this position: one value per sort key, then the contact id.
    pub after: Option<(Vec<SortValue>, String)>,
    pub offset: usize,
    pub limit: usize,
}

impl ContactQuery {
    /// Newest first, HighLevel's default order.
    pub fn default_sort() -> Vec<Sort> {
        vec![Sort {
            field: SortField::DateAdded,
            desc: true,
        }]
    }

    /// All of a location's live contacts, newest first.
    pub fn all(location: &str, limit: usize) -> ContactQuery {
        ContactQuery {
            location: location.to_string(),
            business: None,
            filters: Vec::new(),
            text: None,
            sort: ContactQuery::default_sort(),
            after: None,
            offset: 0,
            limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_round_trip_and_aliases_parse() {
        for f in Field::ALL {
            assert_eq!(Field::parse(f.json_name()), Some(f));
        }
        assert_eq!(Field::parse("emailLowerCase"), Some(Field::Email));
        assert_eq!(Field::parse("fullNameLowerCase"), Some(Field::Name));
        assert_eq!(Field::parse("nope"), None);
    }
}
