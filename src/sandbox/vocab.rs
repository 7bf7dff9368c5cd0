//! Static vocabularies the seeded generators draw from: names (with unicode),
//! companies (with emoji and JSON-hostile characters), places, tags, sources,
//! time zones, custom-field values and attribution patterns for contacts;
//! titles, bodies, colours, statuses and addresses for tasks, notes and
//! appointments; names and descriptions for businesses.
//!
//! Contacts store small indices into these tables, which keeps 100k+ contacts
//! per location compact in memory.

/// First names: (display, ascii used for e-mail local parts).
pub(super) const FIRST_NAMES: &[(&str, &str)] = &[
    ("James", "james"),
    ("Mary", "mary"),
    ("José", "jose"),
    ("Zoë", "zoe"),
    ("Łukasz", "lukasz"),
    ("李", "li"),
    ("Ἀθηνᾶ", "athina"),
    ("Søren", "soren"),
    ("Aoife", "aoife"),
    ("Émilie", "emilie"),
    ("Björn", "bjorn"),
    ("Олег", "oleg"),
    ("محمد", "mohammed"),
    ("Priya", "priya"),
    ("Hiroshi", "hiroshi"),
    ("Fatima", "fatima"),
    ("Chloé", "chloe"),
    ("Mateo", "mateo"),
    ("Noah", "noah"),
    ("Olivia", "olivia"),
    ("Liam", "liam"),
    ("Emma", "emma"),
    ("Ava", "ava"),
    ("Sophia", "sophia"),
    ("Lucas", "lucas"),
    ("Mia", "mia"),
    ("Ethan", "ethan"),
    ("Amelia", "amelia"),
    ("Oliver", "oliver"),
    ("Isabella", "isabella"),
    ("Jürgen", "jurgen"),
    ("Siobhán", "siobhan"),
    ("Anne-Marie", "annemarie"),
    ("D'Andre", "dandre"),
    ("Kwame", "kwame"),
    ("Ngozi", "ngozi"),
];

/// Last names: (display, ascii used for e-mail local parts).
pub(super) const LAST_NAMES: &[(&str, &str)] = &[
    ("Smith", "smith"),
    ("Johnson", "johnson"),
    ("García", "garcia"),
    ("Müller", "muller"),
    ("Kowalski", "kowalski"),
    ("王", "wang"),
    ("Παπαδόπουλος", "papadopoulos"),
    ("O'Brien", "obrien"),
    ("Nguyễn", "nguyen"),
    ("Brown", "brown"),
    ("Williams", "williams"),
    ("Jones", "jones"),
    ("Miller", "miller"),
    ("Davis", "davis"),
    ("Rodríguez", "rodriguez"),
    ("Martínez", "martinez"),
    ("Hernández", "hernandez"),
    ("Lopez", "lopez"),
    ("Wilson", "wilson"),
    ("Anderson", "anderson"),
    ("Taylor", "taylor"),
    ("Thomas", "thomas"),
    ("Moore", "moore"),
    ("Jackson", "jackson"),
    ("Martin", "martin"),
    ("Lee", "lee"),
    ("Pérez", "perez"),
    ("Thompson", "thompson"),
    ("White", "white"),
    ("Harris", "harris"),
    ("Иванов", "ivanov"),
    ("Şahin", "sahin"),
    ("de la Cruz", "delacruz"),
    ("van der Berg", "vanderberg"),
    ("Okafor", "okafor"),
    ("Sato", "sato"),
];

/// Company names, including emoji, quotes, backslashes and CJK.
pub(super) const COMPANIES: &[&str] = &[
    "Acme Corp",
    "Globex",
    "Initech",
    "Rocket Labs 🚀",
    "Café Müller GmbH",
    "株式会社サンプル",
    "O'Reilly & Sons",
    "\"Quoted\" Holdings",
    "Umbrella, Inc.",
    "Stark Industries",
    "Wayne Enterprises",
    "Pizza 🍕 Palace",
    "Żabka Sp. z o.o.",
    "AC\\DC Supplies",
    "Hooli",
    "Vandelay Industries",
    "Soylent <Green> Co",
    "Ελληνικά Ltd",
];

/// E-mail domains.
pub(super) const DOMAINS: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "example.com",
    "icloud.com",
    "proton.me",
    "company.co.uk",
];

/// Places: (city, state, country code, postal-code prefix).
pub(super) const CITIES: &[(&str, &str, &str, &str)] = &[
    ("Austin", "TX", "US", "787"),
    ("New York", "NY", "US", "100"),
    ("San Francisco", "CA", "US", "941"),
    ("Chicago", "IL", "US", "606"),
    ("Dolomite", "AL", "US", "350"),
    ("Toronto", "ON", "CA", "M5V "),
    ("London", "England", "GB", "SW1A "),
    ("München", "Bayern", "DE", "803"),
    ("São Paulo", "SP", "BR", "010"),
    ("Kraków", "Małopolskie", "PL", "30-"),
    ("Zürich", "ZH", "CH", "80"),
    ("東京", "Tokyo", "JP", "100-"),
    ("Sydney", "NSW", "AU", "20"),
    ("Ciudad de México", "CDMX", "MX", "06"),
    ("Dublin", "Leinster", "IE", "D0"),
    ("Αθήνα", "Attica", "GR", "10"),
];

/// Street names for `address1`.
pub(super) const STREETS: &[&str] = &[
    "Main St",
    "1st St N",
    "Oak Avenue",
    "Rue de la Paix",
    "Königstraße",
    "Calle Mayor",
    "Elm Street, Apt 4B",
    "Sunset Blvd",
];

/// IANA time zones.
pub(super) const TIMEZONES: &[&str] = &[
    "America/Chicago",
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Calcutta",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Europe/Warsaw",
];

/// Tag vocabulary (at most 16: contacts keep tags as a bit mask).
pub(super) const TAGS: &[&str] = &[
    "lead",
    "customer",
    "vip",
    "newsletter",
    "webinar-2024",
    "cold",
    "hot",
    "follow up",
    "Facebook Ad",
    "referral",
    "do-not-call",
    "trial",
];

/// Contact sources.
pub(super) const SOURCES: &[&str] = &[
    "public api",
    "form",
    "import",
    "manual",
    "facebook",
    "zapier",
    "Website Chat",
];

/// Websites.
pub(super) const WEBSITES: &[&str] = &[
    "https://www.example.com",
    "https://acme.test",
    "http://shop.example.org/path?x=1&y=2",
    "https://例え.jp",
    "www.no-scheme.io",
];

/// Value choices of each of the five custom fields (index = field number).
pub(super) const CUSTOM_VALUES: &[&[&str]] = &[
    &["Gold", "Silver", "Bronze", "Platinum"],
    &["10", "42", "77", "99", "0"],
    &["2024-01-31", "2025-06-30", "2026-12-01"],
    &[
        "Prefers email",
        "Call after 5pm",
        "Habla español",
        "日本語OK",
        "Likes 🎉",
    ],
    &["Yes", "No"],
];

/// DND channels in `dndSettings`, in spec order.
pub(super) const DND_CHANNELS: &[&str] = &["Call", "Email", "SMS", "WhatsApp", "GMB", "FB"];

/// DND statuses; a channel's 2-bit code 1..=3 indexes this table minus one.
pub(super) const DND_STATUSES: &[&str] = &["active", "inactive", "permanent"];

/// Attribution patterns: (url, utmSource, utmMedium, campaign, referrer, medium).
pub(super) type Attribution = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

/// Attribution source patterns.
pub(super) const ATTRIBUTIONS: &[Attribution] = &[
    ("Trigger Link", None, None, None, None, Some("trigger_link")),
    (
        "https://landing.example.com/offer?utm_source=google",
        Some("google"),
        Some("cpc"),
        Some("spring-sale"),
        Some("https://www.google.com/"),
        Some("form"),
    ),
    (
        "https://www.facebook.com/ads",
        Some("facebook"),
        Some("paid_social"),
        Some("Retargeting 🎯"),
        None,
        Some("survey"),
    ),
    ("Contact Form", None, None, None, None, Some("form")),
];

/// User agents used in attribution sources.
pub(super) const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
];

/// Task titles.
pub(super) const TASK_TITLES: &[&str] = &[
    "Call back",
    "Send proposal",
    "Follow up on quote",
    "Schedule demo",
    "Collect payment",
    "Renewal reminder",
    "Send contract 📄",
    "Check in after onboarding",
    "Prepare invoice #\"Q3\"",
    "Rückruf vereinbaren",
    "Llamar al cliente",
    "見積もりを送る",
    "Review <signed> NDA",
    "Update CRM notes",
];

/// Task bodies, including multi-line, unicode and markup-like text.
pub(super) const TASK_BODIES: &[&str] = &[
    "Asked to be called after 5pm.",
    "Wants pricing for the team plan (12 seats).",
    "Left voicemail twice; try SMS next.",
    "Line 1\nLine 2\n- bullet",
    "Send the deck from the webinar 🎥",
    "Bitte auf Deutsch antworten.",
    "Customer said: \"maybe next quarter\"",
    "Path C:\\Docs\\contract.pdf attached",
    "<b>Urgent</b> &amp; important",
    "",
    "Confirm billing address before invoicing.",
    "折り返し電話をお願いします。",
];

/// Note titles.
pub(super) const NOTE_TITLES: &[&str] = &[
    "Call summary",
    "Follow-up summary",
    "Discovery notes",
    "Objections",
    "Résumé de l'appel",
    "Meeting recap 📝",
];

/// Note bodies.
pub(super) const NOTE_BODIES: &[&str] = &[
    "Spoke with the contact; interested in the annual plan.",
    "No answer. Left a voicemail.",
    "Prefers email over phone.",
    "Budget approved for Q2.\nDecision maker: CFO.",
    "Asked for a discount of 10%.",
    "Met at the trade show 🎪 booth #42.",
    "Kunde möchte einen Rückruf am Montag.",
    "Cliente prefiere WhatsApp.",
    "<p>Sent <em>brochure</em> via email</p>",
    "Quote: \"We'll decide next week\"",
    "Referral from an existing customer.",
    "Unsubscribed from newsletter but still a lead.",
    "電話で確認済み。",
    "Signed up for the free trial.",
    "Do not contact before 10am (timezone!)",
    "Paid invoice INV-2024-0042 ✅",
];

/// Note colours (hex).
pub(super) const NOTE_COLORS: &[&str] = &["#FFAA00", "#FF5733", "#33C1FF", "#7DDA58", "#CCCCCC"];

/// Appointment titles.
pub(super) const APPOINTMENT_TITLES: &[&str] = &[
    "Discovery call",
    "Product demo",
    "Consultation",
    "Onboarding session",
    "Quarterly review",
    "Site visit 🏠",
    "Beratungsgespräch",
    "Follow-up meeting",
];

/// Appointment notes.
pub(super) const APPOINTMENT_NOTES: &[&str] = &[
    "Bring the signed forms.",
    "Customer will join from mobile.",
    "Rescheduled once already.",
    "Parking on level -2 📍",
    "Discuss renewal & upsell",
];

/// Appointment addresses (meeting links and street addresses).
pub(super) const APPOINTMENT_ADDRESSES: &[&str] = &[
    "https://zoom.us/j/1234567890",
    "https://meet.google.com/abc-defg-hij",
    "123 Main St, Austin, TX 78701",
    "Königstraße 1, 70173 Stuttgart",
    "Phone call",
    "Office – Room 4B",
];

/// Appointment states: (`status`, `appointmentStatus`).
pub(super) const APPOINTMENT_STATUSES: &[(&str, &str)] = &[
    ("booked", "new"),
    ("confirmed", "confirmed"),
    ("cancelled", "cancelled"),
    ("showed", "showed"),
    ("noshow", "noshow"),
    ("invalid", "invalid"),
];

/// Business names.
pub(super) const BUSINESS_NAMES: &[&str] = &[
    "Microsoft",
    "Acme Corp",
    "Globex Corporation",
    "Café Müller GmbH",
    "株式会社サンプル",
    "O'Reilly & Sons",
    "Pizza 🍕 Palace",
    "Northwind Traders",
    "Contoso Ltd",
    "\"Quoted\" Holdings",
    "Żabka Sp. z o.o.",
    "Blue Sky Dental",
];

/// Business descriptions.
pub(super) const BUSINESS_DESCRIPTIONS: &[&str] = &[
    "Software and cloud services",
    "Family-run bakery since 1962 🥐",
    "Regional distributor of office supplies",
    "Dental clinic with three locations",
    "Import & export <wholesale>",
];
