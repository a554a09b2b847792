"""English and French strings of the human pages (the lot page a QR code opens).

Every visible string has a key in both languages, vocabularies included (forms, processes,
risk, flag classes and codes, ICGLR site colours, event types): ``t(lang, key, **values)``
fills ``{placeholders}``. Countries come from pycountry (its French catalogue) with a few
shorter everyday names. Numbers, dates, masses and money are formatted per language here
too, so templates only place text.
"""

from __future__ import annotations

import datetime as dt
import gettext
from functools import cache

LANGUAGES = ("en", "fr")
DEFAULT_LANGUAGE = "en"

NBSP = "\u00a0"
NNBSP = "\u202f"  # narrow no-break space: French thousands separator, and before : ; ! ?

EN: dict[str, str] = {
    # page
    "page.title": "Gold lot {lot}",
    "page.lang_name": "English",
    "page.other_languages": "Language:",
    "page.served_by": "Page served by {server}",
    "page.no_personal_data": "The log records organisations only: no person is named.",
    # verdict
    "verdict.ok": "Verified by this server",
    "verdict.ok_detail": (
        "Every signature, inclusion proof and rule behind lot {lot} checks out against the "
        "public log {origin} ({size} entries)."
    ),
    "verdict.bad": "Not verified",
    "verdict.bad_detail": (
        "This server could not verify the record of lot {lot}. Do not rely on what it says."
    ),
    "verdict.reasons": "Reasons (technical):",
    "verdict.unknown_lot": "unknown lot",
    # label
    "label.older_title": "This label was printed at an earlier step",
    "label.older_since": "It was printed for the step of {date}. Since then:",
    "label.older_nothing": "It was printed for the step of {date}; the lot has moved on since.",
    "label.current": "This label shows the lot's latest step.",
    # identity
    "lot.heading": "This gold",
    "lot.id": "Lot",
    "lot.form": "Form",
    "lot.mass": "Mass",
    "lot.fineness": "Fineness",
    "lot.grade": "Grade",
    "lot.fine_gold": "Fine gold",
    "lot.bar": "Bar serial",
    "lot.bar_value": "{serial} (made in {year})",
    "lot.held_by": "Held by",
    "lot.held_in": "{name}, {country}",
    "lot.status": "Status",
    "lot.status.active": "Active",
    "lot.status.offered": "Offered to {name}, awaiting acceptance",
    "lot.status.consumed": "Processed into other lots",
    "lot.went_into": "Its gold went into:",
    "lot.export": "Export",
    "lot.exported_to": "Exported; recorded destination: {country}",
    "lot.exported": "Exported",
    "lot.not_exported": "Not exported",
    "lot.on_hold": "On hold: it cannot be sold, processed or exported until a flag is resolved.",
    "unit.ppm": "ppm",
    "unit.grade": "g/t",
    # forms
    "form.ore": "Ore",
    "form.concentrate": "Concentrate",
    "form.gold": "Raw gold (dust, nuggets or sponge)",
    "form.dore": "Doré (unrefined gold bar)",
    "form.bar": "Refined gold bar",
    # origins
    "origins.heading": "Where it was mined",
    "origins.caption": "ICGLR mine-site colour when this gold was registered",
    "origins.operated_by": "Operated by {name}",
    "origins.assessed": "Assessed on {assessed}, valid until {valid}",
    "origins.expired": "Its assessment had expired on {valid}, before this gold was registered",
    "origins.never_assessed": "Never assessed",
    "origins.cahra": "Conflict-affected or high-risk area",
    "origins.none": "No origin site could be shown.",
    "site.green": "Green",
    "site.green.means": "certified",
    "site.yellow": "Yellow",
    "site.yellow.means": "may produce, must remedy",
    "site.red": "Red",
    "site.red.means": "may not produce",
    "site.blue": "Blue",
    "site.blue.means": "not inspected",
    # timeline
    "timeline.heading": "Custody and processing",
    "timeline.intro": (
        "Each step is an event signed by the organisation named, in the public log, "
        "oldest first. Steps marked ◆ concern this lot itself; the others, the lots it was "
        "made from."
    ),
    "timeline.this_lot": "this lot",
    "event.lot.registered": "Registered at the mine site by {actor}",
    "event.lot.transfer_offered": "Offered for sale by {actor}",
    "event.lot.transfer_accepted": "Received by {actor}",
    "event.lot.transfer_rejected": "Refused by {actor}",
    "event.lot.transfer_cancelled": "Offer withdrawn by {actor}",
    "event.lot.processed": "Processed by {actor}",
    "event.lot.assayed": "Assayed by {actor}",
    "event.lot.exported": "Exported by {actor}",
    "event.lot.flagged": "Flag raised by {actor}",
    "event.lot.flag_resolved": "Flag resolved by {actor}",
    "event.other": "Recorded by {actor}",
    "detail.site": "Mine site: {site}",
    "detail.to": "To {name}",
    "detail.process": "{process}",
    "detail.made": "Made: {outputs}",
    "detail.from": "From: {inputs}",
    "detail.assay": "{method}: {fineness}",
    "detail.destination": "Destination: {country}",
    "detail.flag": "{flag}",
    "detail.outcome": "Outcome: {outcome}",
    "detail.weighed": "Weighed: {mass}",
    # processes
    "process.none": "No processing",
    "process.crushing": "Crushing",
    "process.washing": "Washing",
    "process.gravity": "Gravity concentration",
    "process.amalgamation_retort": "Mercury amalgamation with a retort",
    "process.amalgamation_open": "Open mercury amalgamation",
    "process.whole_ore_amalgamation": "Whole-ore mercury amalgamation",
    "process.cyanidation": "Cyanidation",
    "process.cyanide_on_mercury_tailings": "Cyanidation of mercury tailings",
    "process.smelting": "Smelting",
    "process.refining": "Refining",
    "process.splitting": "Splitting into smaller lots",
    "process.merging": "Merging lots",
    # assay methods
    "method.touchstone": "Touchstone test",
    "method.acid": "Acid test",
    "method.xrf": "X-ray fluorescence",
    "method.fire_assay": "Fire assay",
    # flags and risk
    "flags.heading": "Due-diligence flags",
    "flags.risk": "Risk level",
    "flags.risk_explain": "The highest class among this lot's open flags.",
    "flags.none": "No flags: nothing in this gold's record calls for extra checks.",
    "flags.class": "Class: {cls}",
    "risk.low": "Low",
    "risk.medium": "Medium",
    "risk.high": "High",
    "risk.hold": "On hold",
    "class.hold": "Hold",
    "class.high": "High",
    "class.medium": "Medium",
    "flag.open": "Open",
    "flag.resolved": "Resolved",
    "flag.resolved_as": "Resolved: {outcome}",
    "outcome.unfounded": "found to be unfounded",
    "outcome.remediated": "remediated",
    "code.worst_forms_child_labour": "Worst forms of child labour",
    "code.forced_labour": "Forced labour",
    "code.armed_group_support": "Support to armed groups (control of access or taxes)",
    "code.serious_abuse": "Serious human-rights abuse",
    "code.child_labour": "Child labour",
    "code.security_forces_illegal": "Illegal taxation or control by security forces",
    "code.implausible_volume": "More gold than its producers could plausibly have mined",
    "code.mass_discrepancy": "A weighed mass differs from the recorded mass",
    "code.undeclared_border_crossing": "Crossed a border without a recorded export",
    "code.origin_misrepresentation": "Misrepresented origin",
    "code.bribery": "Bribery",
    "code.money_laundering": "Money laundering",
    "code.taxes_unpaid": "Taxes, fees or royalties unpaid",
    "code.mercury_worst_practice": "Worst mercury practice (Minamata Convention, Annex C)",
    "code.fineness_discrepancy": "An assay raised the fineness by more than 50 ‰",
    "code.armed_groups_nearby": "Armed groups near the mine site",
    "code.cahra_origin": "Mined in a conflict-affected or high-risk area",
    "code.site_yellow": "Mine site rated yellow: may produce, must remedy",
    "code.site_unassessed": "Mine site not inspected when the gold was registered",
    "code.other": "Flag {code}",
    # gender
    "gender.heading": "Women in this gold",
    "gender.producers": "{women} and {men} produced this gold.",
    "gender.women.one": "{n} woman",
    "gender.women.other": "{n} women",
    "gender.men.one": "{n} man",
    "gender.men.other": "{n} men",
    "gender.women_led": "{pct} of its fine gold came from teams led by women.",
    "gender.payments": "Payments to the producers:",
    "gender.paid": "{total}, of which {to_women} ({pct}) put directly into women's hands.",
    "gender.withheld": (
        "{currency}: withheld to protect privacy (figures are shown only for groups of at "
        "least 5 people)."
    ),
    "gender.no_payments": "No payment to the producers was recorded.",
    "gender.chart_title": "Women's share of the producers and of the fine gold",
    "gender.bar_producers": "Producers",
    "gender.share_women": "{pct} women",
    "gender.bar_women_led": "Fine gold from women-led teams",
    "gender.legend_women": "Women",
    "gender.legend_men": "Men",
    "gender.legend_other": "Other teams",
    # verify yourself
    "verify.heading": "Check it yourself",
    "verify.honest": (
        "This verdict is this server's own check. Full trust comes from verifying the "
        "bundle offline, on your own computer, with the programme's published keys."
    ),
    "verify.download": "Download the evidence bundle (JSON)",
    "verify.step_download": "Download the bundle (saved as {file}), then copy it to a computer.",
    "verify.step_run": "With goldtrail installed, run:",
    "verify.step_compare": (
        "Check that these keys are the ones the programme publishes, and not only the ones "
        "shown on this page:"
    ),
    "verify.log_key": "Log key",
    "verify.registrar_key": "Registrar key",
    "verify.proves": (
        "The bundle proves that every step above is in the public log; it cannot prove "
        "that nothing was left out. Independent monitors replay the whole log for that."
    ),
    # errors
    "error.unknown_lot.title": "Lot not found",
    "error.unknown_lot.detail": (
        "This server knows no gold lot {lot}. Check the code on the label, or ask the seller."
    ),
    "error.unknown_label.title": "Label not recognised",
    "error.unknown_label.detail": (
        "The label's code does not match any step of lot {lot}. The label may be damaged or "
        "not genuine."
    ),
    "error.back": "Gold traceability by goldtrail",
    # reports dashboard (issue 7)
    "reports.title": "Gold reports: gender and due diligence",
    "reports.intro": (
        "Computed from the public log {origin} ({size} entries). The reports count; they "
        "never name or single out a person. A payment or income figure is shown only when "
        "it concerns at least 5 people."
    ),
    "reports.period.all": "Period: the whole log",
    "reports.period.range": "Period: {start} to {end}",
    "reports.period.from": "Period: from {start}",
    "reports.period.to": "Period: up to {end}",
    "reports.filter.country": "Country: {country}",
    "reports.filter.site": "Site: {site}",
    "reports.filter.cooperative": "Cooperative: {cooperative}",
    "reports.filters": "Filters",
    "reports.field.from": "From",
    "reports.field.to": "To",
    "reports.field.country": "Country (code, e.g. CD)",
    "reports.field.site": "Site (id)",
    "reports.field.cooperative": "Cooperative (id)",
    "reports.apply": "Show",
    "reports.clear": "Clear the filters",
    "reports.downloads": "Download the data",
    "reports.download.gender_json": "Gender report (JSON)",
    "reports.download.gender_csv": "Gender report (CSV)",
    "reports.download.dd_json": "Due-diligence report (JSON)",
    "reports.download.epcis": "Lot events, EPCIS 2.0 (JSON-LD)",
    "reports.download.lots_csv": "Every lot (CSV)",
    "reports.facts.heading": "Key figures",
    "reports.fact.lots": "Lots registered",
    "reports.fact.lots_value": "{lots}, of which {women_led} by women-led teams",
    "reports.fact.producers": "Producers",
    "reports.fact.producers_value": "{women} women and {men} men ({share} women)",
    "reports.fact.fine": "Fine gold from women-led teams",
    "reports.fact.fine_value": "{share} ({women_led} of {total})",
    "reports.fact.payments": "Payments put into women's hands",
    "reports.fact.payment_value": "{currency}: {share} (groups totalling {producers} producers)",
    "reports.fact.payment_withheld": "{currency}: withheld (fewer than 5 people)",
    "reports.fact.excluded": (
        "Registrations paying 1 to 4 women or 1 to 4 men, left out of every payment figure: {n}"
    ),
    "reports.fact.no_payments": "No payment recorded",
    "reports.fact.orgs": "Organisations led by women",
    "reports.fact.orgs_value": "{women_led} of {known} ({share})",
    "reports.fact.orgs_members": "Women among members: {share} ({women} of {total})",
    "reports.fact.orgs_leaders": "Women among leaders: {share} ({women} of {total})",
    "reports.fact.orgs_none": "No organisation profile recorded",
    "reports.fact.sites": "Sites by ICGLR colour (today)",
    "reports.fact.open_flags": "Open flags",
    "reports.fact.open_flags_value": "{total} (hold {hold}, high {high}, medium {medium})",
    "reports.fact.on_hold": "Lots on hold",
    "reports.fact.none": "None",
    "reports.fact.resolved": "Flags resolved in the period",
    "reports.fact.resolved_value": "{count}; time to resolve: median {median}, longest {max}",
    "reports.hours": "{n} h",
    "reports.gender.heading": "Gender",
    "reports.gender.intro": (
        "Women's part in production, in payments and at the mine sites. Shares from "
        "registrations count the producers of each lot; site figures come from each site's "
        "latest assessment."
    ),
    "reports.dd.heading": "Due diligence",
    "reports.dd.intro": (
        "Site colours as of today; open flags and holds on the lots still in hand (not "
        "consumed), chosen by their origin sites."
    ),
    "reports.table.caption": "The numbers of the chart: {title}",
    "reports.suppressed": "suppressed",
    "reports.suppressed_note": (
        "suppressed: withheld because the figure concerns fewer than 5 people. –: no data."
    ),
    "reports.no_data": "no data",
    "reports.chart_desc": (
        "{title}. Series: {series}. The numbers are in the table that goes with the chart."
    ),
    "reports.chart.trend_producers": "Women in production, by month",
    "reports.chart.trend_payments": "Share of payments into women's hands, by month",
    "reports.chart.trend_gbv": (
        "Gender-based violence: reports per 30 days across the sites, by month"
    ),
    "reports.chart.site_shares": "Women's shares per site",
    "reports.chart.site_owned": "Women-owned pits and processing units per site",
    "reports.chart.site_income_gap": "Gap in median daily income, women vs men (1 − women/men)",
    "reports.chart.site_gbv": "Reports of gender-based violence per 30 days, per site",
    "reports.chart.org_shares": "Women among members and leaders, per organisation",
    "reports.chart.dd_colours": "Sites by ICGLR colour",
    "reports.chart.dd_mass": "Mass of lots in hand by risk class (g)",
    "reports.chart.dd_flags": "Open flags by code",
    "reports.series.women_share": "Women's share of producers",
    "reports.series.women_led_fine": "Fine gold from women-led teams",
    "reports.series.producers": "Producers (registrations)",
    "reports.series.workforce": "Workforce (assessment)",
    "reports.series.pits": "Pits",
    "reports.series.units": "Processing units",
    "reports.series.income_gap": "Income gap",
    "reports.series.gbv": "Reports per 30 days",
    "reports.series.income_women": "Women, median per day",
    "reports.series.income_men": "Men, median per day",
    "reports.series.members": "Women among members",
    "reports.series.leaders": "Women among leaders",
    "reports.series.women_led": "Led by a woman",
    "reports.series.sites": "Sites",
    "reports.series.mass": "Mass (g)",
    "reports.series.open_flags": "Open flags",
    "reports.legend.women_share": "Women's share of producers",
    "reports.legend.women_led_fine": "Fine gold, women-led teams",
    "reports.legend.producers": "Producers (registrations)",
    "reports.legend.units": "Processing units",
    "reports.legend.members": "Members",
    "reports.legend.gbv": "Per 30 days",
    "reports.legend.leaders": "Leaders",
    "reports.column.month": "Month",
    "reports.column.site": "Site",
    "reports.column.colour": "Colour",
    "reports.column.risk": "Risk",
    "reports.column.code": "Code",
    "reports.column.organisation": "Organisation",
    "reports.yes": "Yes",
    "reports.no": "No",
    "reports.bad_filters.title": "These filters cannot be used",
    "reports.bad_filters.detail": (
        "Check the dates (YYYY-MM-DD, the first not after the last), the country code and "
        "the ids. Details: {detail}"
    ),
    "reports.generated": (
        "Site colours as of {date}; the reports are computed from the log at each visit."
    ),
}

FR: dict[str, str] = {
    # page
    "page.title": "Lot d'or {lot}",
    "page.lang_name": "Français",
    "page.other_languages": "Langue :",
    "page.served_by": "Page servie par {server}",
    "page.no_personal_data": (
        "Le journal n'enregistre que des organisations : aucune personne n'y est nommée."
    ),
    # verdict
    "verdict.ok": "Vérifié par ce serveur",
    "verdict.ok_detail": (
        "Toutes les signatures, preuves d'inclusion et règles derrière le lot {lot} sont "
        "conformes au journal public {origin} ({size} entrées)."
    ),
    "verdict.bad": "Non vérifié",
    "verdict.bad_detail": (
        "Ce serveur n'a pas pu vérifier l'historique du lot {lot}. Ne vous fiez pas à ce "
        "qu'il affiche."
    ),
    "verdict.reasons": "Raisons (techniques) :",
    "verdict.unknown_lot": "lot inconnu",
    # label
    "label.older_title": "Cette étiquette a été imprimée à une étape antérieure",
    "label.older_since": "Elle a été imprimée pour l'étape du {date}. Depuis :",
    "label.older_nothing": ("Elle a été imprimée pour l'étape du {date} ; le lot a évolué depuis."),
    "label.current": "Cette étiquette correspond à la dernière étape du lot.",
    # identity
    "lot.heading": "Cet or",
    "lot.id": "Lot",
    "lot.form": "Forme",
    "lot.mass": "Masse",
    "lot.fineness": "Titre",
    "lot.grade": "Teneur",
    "lot.fine_gold": "Or fin",
    "lot.bar": "N° de série du lingot",
    "lot.bar_value": "{serial} (fabriqué en {year})",
    "lot.held_by": "Détenu par",
    "lot.held_in": "{name}, {country}",
    "lot.status": "Statut",
    "lot.status.active": "Actif",
    "lot.status.offered": "Proposé à {name}, en attente d'acceptation",
    "lot.status.consumed": "Transformé en d'autres lots",
    "lot.went_into": "Son or a été transformé en :",
    "lot.export": "Exportation",
    "lot.exported_to": "Exporté ; destination enregistrée : {country}",
    "lot.exported": "Exporté",
    "lot.not_exported": "Non exporté",
    "lot.on_hold": (
        "Bloqué : il ne peut être vendu, transformé ni exporté avant la résolution d'un "
        "signalement."
    ),
    "unit.ppm": "ppm",
    "unit.grade": "g/t",
    # forms
    "form.ore": "Minerai",
    "form.concentrate": "Concentré",
    "form.gold": "Or brut (poudre, pépites ou éponge)",
    "form.dore": "Doré (lingot d'or non affiné)",
    "form.bar": "Lingot d'or affiné",
    # origins
    "origins.heading": "Où il a été extrait",
    "origins.caption": "Couleur CIRGL du site minier à l'enregistrement de cet or",
    "origins.operated_by": "Exploité par {name}",
    "origins.assessed": "Évalué le {assessed}, valable jusqu'au {valid}",
    "origins.expired": "Son évaluation avait expiré le {valid}, avant l'enregistrement de cet or",
    "origins.never_assessed": "Jamais évalué",
    "origins.cahra": "Zone de conflit ou à haut risque",
    "origins.none": "Aucun site d'origine ne peut être affiché.",
    "site.green": "Vert",
    "site.green.means": "certifié",
    "site.yellow": "Jaune",
    "site.yellow.means": "peut produire, doit remédier",
    "site.red": "Rouge",
    "site.red.means": "ne peut pas produire",
    "site.blue": "Bleu",
    "site.blue.means": "non inspecté",
    # timeline
    "timeline.heading": "Chaîne de possession et transformation",
    "timeline.intro": (
        "Chaque étape est un événement signé par l'organisation nommée, dans le journal "
        "public, de la plus ancienne à la plus récente. Les étapes marquées ◆ concernent ce "
        "lot lui-même ; les autres, les lots dont il est issu."
    ),
    "timeline.this_lot": "ce lot",
    "event.lot.registered": "Enregistré au site minier par {actor}",
    "event.lot.transfer_offered": "Proposé à la vente par {actor}",
    "event.lot.transfer_accepted": "Reçu par {actor}",
    "event.lot.transfer_rejected": "Refusé par {actor}",
    "event.lot.transfer_cancelled": "Offre retirée par {actor}",
    "event.lot.processed": "Transformé par {actor}",
    "event.lot.assayed": "Analysé par {actor}",
    "event.lot.exported": "Exporté par {actor}",
    "event.lot.flagged": "Signalement émis par {actor}",
    "event.lot.flag_resolved": "Signalement résolu par {actor}",
    "event.other": "Enregistré par {actor}",
    "detail.site": "Site minier : {site}",
    "detail.to": "À {name}",
    "detail.process": "{process}",
    "detail.made": "Produit : {outputs}",
    "detail.from": "À partir de : {inputs}",
    "detail.assay": "{method} : {fineness}",
    "detail.destination": "Destination : {country}",
    "detail.flag": "{flag}",
    "detail.outcome": "Issue : {outcome}",
    "detail.weighed": "Pesé : {mass}",
    # processes
    "process.none": "Sans traitement",
    "process.crushing": "Concassage",
    "process.washing": "Lavage",
    "process.gravity": "Concentration gravimétrique",
    "process.amalgamation_retort": "Amalgamation au mercure avec cornue",
    "process.amalgamation_open": "Amalgamation au mercure à l'air libre",
    "process.whole_ore_amalgamation": "Amalgamation au mercure du minerai entier",
    "process.cyanidation": "Cyanuration",
    "process.cyanide_on_mercury_tailings": "Cyanuration de résidus au mercure",
    "process.smelting": "Fonte",
    "process.refining": "Affinage",
    "process.splitting": "Division en lots plus petits",
    "process.merging": "Regroupement de lots",
    # assay methods
    "method.touchstone": "Essai à la pierre de touche",
    "method.acid": "Essai à l'acide",
    "method.xrf": "Fluorescence X",
    "method.fire_assay": "Essai par coupellation",
    # flags and risk
    "flags.heading": "Signalements de diligence raisonnable",
    "flags.risk": "Niveau de risque",
    "flags.risk_explain": "La classe la plus élevée parmi les signalements ouverts de ce lot.",
    "flags.none": (
        "Aucun signalement : rien dans l'historique de cet or n'appelle de vérification "
        "supplémentaire."
    ),
    "flags.class": "Classe : {cls}",
    "risk.low": "Faible",
    "risk.medium": "Moyen",
    "risk.high": "Élevé",
    "risk.hold": "Bloqué",
    "class.hold": "Blocage",
    "class.high": "Élevé",
    "class.medium": "Moyen",
    "flag.open": "Ouvert",
    "flag.resolved": "Résolu",
    "flag.resolved_as": "Résolu : {outcome}",
    "outcome.unfounded": "jugé infondé",
    "outcome.remediated": "corrigé",
    "code.worst_forms_child_labour": "Pires formes de travail des enfants",
    "code.forced_labour": "Travail forcé",
    "code.armed_group_support": "Soutien à des groupes armés (contrôle de l'accès ou taxes)",
    "code.serious_abuse": "Atteinte grave aux droits humains",
    "code.child_labour": "Travail des enfants",
    "code.security_forces_illegal": "Taxation illégale ou contrôle par des forces de sécurité",
    "code.implausible_volume": "Plus d'or que ses producteurs n'ont pu vraisemblablement extraire",
    "code.mass_discrepancy": "Une masse pesée diffère de la masse enregistrée",
    "code.undeclared_border_crossing": "A franchi une frontière sans exportation enregistrée",
    "code.origin_misrepresentation": "Fausse déclaration d'origine",
    "code.bribery": "Corruption",
    "code.money_laundering": "Blanchiment d'argent",
    "code.taxes_unpaid": "Taxes, droits ou redevances impayés",
    "code.mercury_worst_practice": (
        "Pire pratique liée au mercure (Convention de Minamata, annexe C)"
    ),
    "code.fineness_discrepancy": "Une analyse a relevé le titre de plus de 50 ‰",
    "code.armed_groups_nearby": "Groupes armés à proximité du site minier",
    "code.cahra_origin": "Extrait dans une zone de conflit ou à haut risque",
    "code.site_yellow": "Site minier classé jaune : peut produire, doit remédier",
    "code.site_unassessed": "Site minier non inspecté lors de l'enregistrement de l'or",
    "code.other": "Signalement {code}",
    # gender
    "gender.heading": "Les femmes dans cet or",
    "gender.producers": "{women} et {men} ont produit cet or.",
    "gender.women.one": "{n} femme",
    "gender.women.other": "{n} femmes",
    "gender.men.one": "{n} homme",
    "gender.men.other": "{n} hommes",
    "gender.women_led": "{pct} de son or fin provient d'équipes dirigées par des femmes.",
    "gender.payments": "Paiements aux producteurs :",
    "gender.paid": "{total}, dont {to_women} ({pct}) remis directement aux femmes.",
    "gender.withheld": (
        "{currency} : montant masqué pour protéger la vie privée (les montants ne sont "
        "affichés que pour des groupes d'au moins 5 personnes)."
    ),
    "gender.no_payments": "Aucun paiement aux producteurs n'a été enregistré.",
    "gender.chart_title": "Part des femmes parmi les producteurs et dans l'or fin",
    "gender.bar_producers": "Producteurs",
    "gender.share_women": "{pct} de femmes",
    "gender.bar_women_led": "Or fin d'équipes dirigées par des femmes",
    "gender.legend_women": "Femmes",
    "gender.legend_men": "Hommes",
    "gender.legend_other": "Autres équipes",
    # verify yourself
    "verify.heading": "Vérifiez vous-même",
    "verify.honest": (
        "Ce verdict est la vérification faite par ce serveur. Une confiance totale vient de "
        "la vérification du paquet de preuves hors ligne, sur votre propre ordinateur, avec "
        "les clés publiées par le programme."
    ),
    "verify.download": "Télécharger le paquet de preuves (JSON)",
    "verify.step_download": (
        "Téléchargez le paquet (enregistré sous le nom {file}), puis copiez-le sur un ordinateur."
    ),
    "verify.step_run": "Avec goldtrail installé, lancez :",
    "verify.step_compare": (
        "Vérifiez que ces clés sont bien celles que publie le programme, et pas seulement "
        "celles affichées sur cette page :"
    ),
    "verify.log_key": "Clé du journal",
    "verify.registrar_key": "Clé du registraire",
    "verify.proves": (
        "Le paquet prouve que chaque étape ci-dessus figure dans le journal public ; il ne "
        "peut pas prouver que rien n'a été omis. Des observateurs indépendants rejouent tout "
        "le journal pour cela."
    ),
    # errors
    "error.unknown_lot.title": "Lot introuvable",
    "error.unknown_lot.detail": (
        "Ce serveur ne connaît aucun lot d'or {lot}. Vérifiez le code sur l'étiquette ou "
        "demandez au vendeur."
    ),
    "error.unknown_label.title": "Étiquette non reconnue",
    "error.unknown_label.detail": (
        "Le code de l'étiquette ne correspond à aucune étape du lot {lot}. L'étiquette est "
        "peut-être abîmée ou contrefaite."
    ),
    "error.back": "Traçabilité de l'or par goldtrail",
    # reports dashboard (issue 7)
    "reports.title": "Rapports sur l'or : genre et devoir de diligence",
    "reports.intro": (
        "Calculés à partir du journal public {origin} ({size} entrées). Les rapports "
        "comptent ; ils ne nomment ni n'isolent jamais une personne. Un chiffre de paiement "
        "ou de revenu n'est montré que s'il concerne au moins 5 personnes."
    ),
    "reports.period.all": "Période : tout le journal",
    "reports.period.range": "Période : du {start} au {end}",
    "reports.period.from": "Période : à partir du {start}",
    "reports.period.to": "Période : jusqu'au {end}",
    "reports.filter.country": "Pays : {country}",
    "reports.filter.site": "Site : {site}",
    "reports.filter.cooperative": "Coopérative : {cooperative}",
    "reports.filters": "Filtres",
    "reports.field.from": "Du",
    "reports.field.to": "Au",
    "reports.field.country": "Pays (code, p. ex. CD)",
    "reports.field.site": "Site (identifiant)",
    "reports.field.cooperative": "Coopérative (identifiant)",
    "reports.apply": "Afficher",
    "reports.clear": "Effacer les filtres",
    "reports.downloads": "Télécharger les données",
    "reports.download.gender_json": "Rapport genre (JSON)",
    "reports.download.gender_csv": "Rapport genre (CSV)",
    "reports.download.dd_json": "Rapport de devoir de diligence (JSON)",
    "reports.download.epcis": "Événements des lots, EPCIS 2.0 (JSON-LD)",
    "reports.download.lots_csv": "Tous les lots (CSV)",
    "reports.facts.heading": "Chiffres clés",
    "reports.fact.lots": "Lots enregistrés",
    "reports.fact.lots_value": "{lots}, dont {women_led} par des équipes dirigées par des femmes",
    "reports.fact.producers": "Productrices et producteurs",
    "reports.fact.producers_value": "{women} femmes et {men} hommes ({share} de femmes)",
    "reports.fact.fine": "Or fin des équipes dirigées par des femmes",
    "reports.fact.fine_value": "{share} ({women_led} sur {total})",
    "reports.fact.payments": "Paiements remis aux femmes",
    "reports.fact.payment_value": (
        "{currency} : {share} (groupes totalisant {producers} productrices et producteurs)"
    ),
    "reports.fact.payment_withheld": "{currency} : masqué (moins de 5 personnes)",
    "reports.fact.excluded": (
        "Enregistrements payant de 1 à 4 femmes ou de 1 à 4 hommes, exclus de tout chiffre "
        "de paiement : {n}"
    ),
    "reports.fact.no_payments": "Aucun paiement enregistré",
    "reports.fact.orgs": "Organisations dirigées par des femmes",
    "reports.fact.orgs_value": "{women_led} sur {known} ({share})",
    "reports.fact.orgs_members": "Femmes parmi les membres : {share} ({women} sur {total})",
    "reports.fact.orgs_leaders": "Femmes parmi les dirigeants : {share} ({women} sur {total})",
    "reports.fact.orgs_none": "Aucun profil d'organisation enregistré",
    "reports.fact.sites": "Sites par couleur CIRGL (aujourd'hui)",
    "reports.fact.open_flags": "Signalements ouverts",
    "reports.fact.open_flags_value": "{total} (blocage {hold}, élevé {high}, moyen {medium})",
    "reports.fact.on_hold": "Lots bloqués",
    "reports.fact.none": "Aucun",
    "reports.fact.resolved": "Signalements résolus sur la période",
    "reports.fact.resolved_value": (
        "{count} ; délai de résolution : médiane {median}, le plus long {max}"
    ),
    "reports.hours": "{n} h",
    "reports.gender.heading": "Genre",
    "reports.gender.intro": (
        "La place des femmes dans la production, dans les paiements et sur les sites miniers. "
        "Les parts issues des enregistrements comptent les productrices et producteurs de "
        "chaque lot ; les chiffres des sites viennent de leur dernière évaluation."
    ),
    "reports.dd.heading": "Devoir de diligence",
    "reports.dd.intro": (
        "Couleurs des sites à ce jour ; signalements ouverts et blocages sur les lots encore "
        "en circulation (non consommés), choisis par leurs sites d'origine."
    ),
    "reports.table.caption": "Les chiffres du graphique : {title}",
    "reports.suppressed": "masqué",
    "reports.suppressed_note": (
        "masqué : chiffre retenu car il concerne moins de 5 personnes. – : pas de donnée."
    ),
    "reports.no_data": "aucune donnée",
    "reports.chart_desc": (
        "{title}. Séries : {series}. Les chiffres sont dans le tableau qui accompagne le graphique."
    ),
    "reports.chart.trend_producers": "Les femmes dans la production, par mois",
    "reports.chart.trend_payments": "Part des paiements remis aux femmes, par mois",
    "reports.chart.trend_gbv": (
        "Violences basées sur le genre : signalements par 30 jours, tous sites, par mois"
    ),
    "reports.chart.site_shares": "Parts des femmes par site",
    "reports.chart.site_owned": "Puits et unités de traitement détenus par des femmes, par site",
    "reports.chart.site_income_gap": (
        "Écart de revenu journalier médian, femmes et hommes (1 − femmes/hommes)"
    ),
    "reports.chart.site_gbv": (
        "Signalements de violences basées sur le genre par 30 jours, par site"
    ),
    "reports.chart.org_shares": "Femmes parmi les membres et les dirigeants, par organisation",
    "reports.chart.dd_colours": "Sites par couleur CIRGL",
    "reports.chart.dd_mass": "Masse des lots en circulation par classe de risque (g)",
    "reports.chart.dd_flags": "Signalements ouverts par code",
    "reports.series.women_share": "Part des femmes parmi les producteurs",
    "reports.series.women_led_fine": "Or fin des équipes dirigées par des femmes",
    "reports.series.producers": "Producteurs (enregistrements)",
    "reports.series.workforce": "Main-d'œuvre (évaluation)",
    "reports.series.pits": "Puits",
    "reports.series.units": "Unités de traitement",
    "reports.series.income_gap": "Écart de revenu",
    "reports.series.gbv": "Signalements par 30 jours",
    "reports.series.income_women": "Femmes, médiane par jour",
    "reports.series.income_men": "Hommes, médiane par jour",
    "reports.series.members": "Femmes parmi les membres",
    "reports.series.leaders": "Femmes parmi les dirigeants",
    "reports.series.women_led": "Dirigée par une femme",
    "reports.series.sites": "Sites",
    "reports.series.mass": "Masse (g)",
    "reports.series.open_flags": "Signalements ouverts",
    "reports.legend.women_share": "Femmes parmi les producteurs",
    "reports.legend.women_led_fine": "Or fin, équipes de femmes",
    "reports.legend.producers": "Producteurs (lots)",
    "reports.legend.units": "Unités",
    "reports.legend.members": "Membres",
    "reports.legend.gbv": "Par 30 jours",
    "reports.legend.leaders": "Dirigeants",
    "reports.column.month": "Mois",
    "reports.column.site": "Site",
    "reports.column.colour": "Couleur",
    "reports.column.risk": "Risque",
    "reports.column.code": "Code",
    "reports.column.organisation": "Organisation",
    "reports.yes": "Oui",
    "reports.no": "Non",
    "reports.bad_filters.title": "Ces filtres ne peuvent pas être utilisés",
    "reports.bad_filters.detail": (
        "Vérifiez les dates (AAAA-MM-JJ, la première au plus tard égale à la dernière), le "
        "code du pays et les identifiants. Détails : {detail}"
    ),
    "reports.generated": (
        "Couleurs des sites au {date} ; les rapports sont calculés à partir du journal à "
        "chaque visite."
    ),
}

STRINGS: dict[str, dict[str, str]] = {"en": EN, "fr": FR}

MONTHS = {
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
    "fr": [
        "janv.",
        "févr.",
        "mars",
        "avr.",
        "mai",
        "juin",
        "juil.",
        "août",
        "sept.",
        "oct.",
        "nov.",
        "déc.",
    ],
}

#: everyday names where the ISO 3166 one is long or inverted
COUNTRY_NAMES = {
    "en": {"CD": "DR Congo", "CG": "Congo", "TZ": "Tanzania", "GB": "United Kingdom"},
    "fr": {"CD": "RD Congo", "CG": "Congo", "TZ": "Tanzanie", "AE": "Émirats arabes unis"},
}

#: ISO 4217 minor units that are not 2
CURRENCY_EXPONENT = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip


def language(lang: str) -> str:
    """``lang`` if the pages speak it, else the default."""
    return lang if lang in STRINGS else DEFAULT_LANGUAGE


def has(lang: str, key: str) -> bool:
    return key in STRINGS[language(lang)]


def t(lang: str, key: str, **values: object) -> str:
    """The string ``key`` in ``lang`` with ``{placeholders}`` filled (plain text: the
    templates escape it)."""
    text = STRINGS[language(lang)][key]
    return text.format(**values) if values else text


# ---------------------------------------------------------------------------
# Numbers


def integer(lang: str, n: int) -> str:
    """1,980,000 in English, 1 980 000 in French."""
    text = f"{n:,}"
    return text.replace(",", NNBSP) if language(lang) == "fr" else text


def decimal(lang: str, value: int, scale: int, places: int, *, trim: bool = True) -> str:
    """``value / 10**scale`` with ``places`` decimals (trailing zeros trimmed if ``trim``),
    using integers only."""
    negative = value < 0
    value = abs(value)
    if places < scale:  # round half up to ``places``
        step = 10 ** (scale - places)
        value = (value + step // 2) // step
        scale = places
    whole, frac = divmod(value, 10**scale)
    digits = f"{frac:0{scale}d}" if scale else ""
    digits = digits.ljust(places, "0")
    if trim:
        digits = digits.rstrip("0")
    point = "," if language(lang) == "fr" else "."
    text = integer(lang, whole) + (point + digits if digits else "")
    return "-" + text if negative else text


def percent(lang: str, part: int, whole: int) -> str:
    """A whole percentage, rounded half up (``84 %``); ``0 %`` when ``whole`` is 0."""
    value = (200 * part + whole) // (2 * whole) if whole > 0 else 0
    return f"{value}{NBSP}%"


def mass(lang: str, mg: int) -> str:
    """A mass in a readable unit with the exact milligrams: ``44.8 g (44,800 mg)``."""
    if mg >= 10**9:
        main = decimal(lang, mg, 9, 3) + f"{NBSP}t"
    elif mg >= 10**6:
        main = decimal(lang, mg, 6, 3) + f"{NBSP}kg"
    else:
        main = decimal(lang, mg, 3, 3) + f"{NBSP}g"
    return f"{main} ({integer(lang, mg)}{NBSP}mg)"


def short_mass(lang: str, mg: int) -> str:
    """A mass in a readable unit only: ``44.8 g``."""
    return mass(lang, mg).split(" (")[0]


def fineness(lang: str, ppm: int, form: str | None) -> str:
    """Fineness in ‰ for gold (``999.9 ‰ (999,900 ppm)``); grade in g/t for ore and
    concentrate (1 ppm = 1 g/t)."""
    if form in ("ore", "concentrate"):
        return f"{integer(lang, ppm)}{NBSP}{t(lang, 'unit.grade')} ({integer(lang, ppm)}{NBSP}ppm)"
    return f"{decimal(lang, ppm, 3, 1)}{NBSP}‰ ({integer(lang, ppm)}{NBSP}ppm)"


def money(lang: str, amount_minor: int, currency: str) -> str:
    """``CDF 1,980,000.00`` in English, ``1 980 000,00 CDF`` in French."""
    exponent = CURRENCY_EXPONENT.get(currency, 2)
    amount = decimal(lang, amount_minor, exponent, exponent, trim=False)
    return f"{amount}{NBSP}{currency}" if language(lang) == "fr" else f"{currency}{NBSP}{amount}"


# ---------------------------------------------------------------------------
# Dates and places


def parse_time(value: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        return None


def date(lang: str, value: str) -> str:
    """``18 Nov 2026`` / ``18 nov. 2026`` from a protocol date or time (as is if neither)."""
    try:
        day = dt.date.fromisoformat(value[:10])
    except (TypeError, ValueError):
        return value
    return f"{day.day}{NBSP}{MONTHS[language(lang)][day.month - 1]}{NBSP}{day.year}"


def time_of_day(lang: str, value: str) -> str:
    """``16:00 UTC`` / ``16 h 00 UTC`` from a protocol time ('' if it is not one)."""
    when = parse_time(value)
    if when is None:
        return ""
    if language(lang) == "fr":
        return f"{when.hour}{NBSP}h{NBSP}{when.minute:02d}{NBSP}UTC"
    return f"{when.hour:02d}:{when.minute:02d}{NBSP}UTC"


@cache
def _french_countries() -> gettext.NullTranslations:
    try:
        import pycountry

        return gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["fr"])
    except (ImportError, OSError):
        return gettext.NullTranslations()


def country(lang: str, code: str | None) -> str:
    """A country's everyday name from its ISO 3166-1 alpha-2 code (the code if unknown)."""
    if not code:
        return "—"
    lang = language(lang)
    if code in COUNTRY_NAMES[lang]:
        return COUNTRY_NAMES[lang][code]
    try:
        import pycountry

        found = pycountry.countries.get(alpha_2=code)
    except (ImportError, LookupError):
        found = None
    if found is None:
        return code
    name = str(found.name)
    if lang == "fr":
        return _french_countries().gettext(name)
    return str(getattr(found, "common_name", name))
