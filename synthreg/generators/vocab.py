"""Built-in text vocabularies, per locale. Pools are built once and sampled vectorized.

Email domains are reserved example domains (RFC 2606 / RFC 6761), so no generated
address can belong to a real person.
"""

from __future__ import annotations

from functools import cache

import pyarrow as pa

__all__ = ["EMAIL_DOMAINS", "pool"]

_FIRST = {
    "en_US": "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew "
    "Betty Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Andrew Emily Paul Donna Joshua "
    "Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy Stephanie Ronald Rebecca "
    "Jason Sharon Edward Laura Jeffrey Cynthia Ryan Dorothy Jacob Amy Gary Kathleen Nicholas Angela "
    "Eric Shirley Jonathan Emma Stephen Brenda Larry Pamela Justin Nicole Scott Anna Brandon Samantha "
    "Benjamin Katherine Samuel Christine Gregory Debra Alexander Rachel Patrick Carolyn Frank Janet "
    "Raymond Maria Jack Olivia Dennis Heather Jerry Helen Tyler Catherine Aaron Diane Jose Julie Adam "
    "Victoria Nathan Joyce Henry Lauren Zachary Kelly Douglas Christina Peter Ruth Kyle Joan Noah "
    "Virginia Ethan Judith Jeremy Evelyn Walter Hannah Christian Andrea Keith Megan Roger Cheryl",
    "de_DE": "Lukas Anna Leon Lea Finn Hannah Jonas Emma Paul Lena Felix Mia Elias Sophie Noah Lina "
    "Maximilian Marie Luis Johanna Ben Clara Henry Emilia Louis Leonie Moritz Laura Julian Sarah Tim "
    "Katharina Jan Luisa Niklas Amelie Philipp Charlotte David Ida Tom Frieda Jakob Greta Erik Ella "
    "Simon Paula Fabian Nele Matthias Jana Tobias Pia Florian Helena Sebastian Carla Stefan Maja",
    "fr_FR": "Gabriel Louise Raphael Ambre Leo Alice Louis Rose Lucas Anna Adam Mia Hugo Julia Jules "
    "Lina Arthur Chloe Nathan Lea Paul Manon Sacha Emma Ethan Ines Noah Camille Tom Juliette Mohamed "
    "Zoe Theo Jade Victor Sarah Martin Lucie Mathis Eva Axel Romane Maxime Clara Antoine Margaux "
    "Baptiste Lola Clement Oceane Julien Pauline Nicolas Elise Pierre Margot Thomas Celine",
}
_LAST = {
    "en_US": "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans "
    "Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez "
    "Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks "
    "Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers "
    "Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson",
    "de_DE": "Mueller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schaefer "
    "Koch Bauer Richter Klein Wolf Schroeder Neumann Schwarz Zimmermann Braun Krueger Hofmann Hartmann "
    "Lange Schmitt Werner Schmitz Krause Meier Lehmann Schmid Schulze Maier Koehler Herrmann Koenig "
    "Walter Mayer Huber Kaiser Fuchs Peters Lang Scholz Moeller Weiss Jung Hahn Vogel Friedrich",
    "fr_FR": "Martin Bernard Thomas Petit Robert Richard Durand Dubois Moreau Laurent Simon Michel "
    "Lefebvre Leroy Roux David Bertrand Morel Fournier Girard Bonnet Dupont Lambert Fontaine Rousseau "
    "Vincent Muller Lefevre Faure Andre Mercier Blanc Guerin Boyer Garnier Chevalier Francois Legrand "
    "Gauthier Garcia Perrin Robin Clement Morin Nicolas Henry Roussel Mathieu Gautier Masson",
}
_CITY = {
    "en_US": "New_York Los_Angeles Chicago Houston Phoenix Philadelphia San_Antonio San_Diego Dallas "
    "Austin Jacksonville Columbus Charlotte Indianapolis Seattle Denver Boston Nashville Detroit "
    "Portland Memphis Louisville Baltimore Milwaukee Albuquerque Tucson Fresno Sacramento Atlanta "
    "Omaha Raleigh Miami Minneapolis Tulsa Cleveland Wichita Arlington Tampa Honolulu Pittsburgh",
    "de_DE": "Berlin Hamburg Muenchen Koeln Frankfurt Stuttgart Duesseldorf Leipzig Dortmund Essen "
    "Bremen Dresden Hannover Nuernberg Duisburg Bochum Wuppertal Bielefeld Bonn Muenster Mannheim",
    "fr_FR": "Paris Marseille Lyon Toulouse Nice Nantes Montpellier Strasbourg Bordeaux Lille Rennes "
    "Reims Toulon Grenoble Dijon Angers Nimes Villeurbanne Clermont-Ferrand Le_Havre Brest Limoges",
}
_COUNTRY = (
    "United_States Canada Mexico Brazil Argentina United_Kingdom Ireland France Germany Spain Portugal "
    "Italy Netherlands Belgium Switzerland Austria Poland Sweden Norway Denmark Finland Greece Turkey "
    "India China Japan South_Korea Indonesia Vietnam Thailand Australia New_Zealand South_Africa "
    "Nigeria Kenya Egypt Morocco Israel Chile Colombia Peru"
)
_COMPANY_A = (
    "Acme Globex Initech Umbrella Stark Wayne Hooli Vandelay Soylent Tyrell Cyberdyne Wonka "
    "Aperture Massive Dynamic Gringotts Oscorp Pied Piper Monarch Nakatomi Blue Sun Virtucon"
)
_COMPANY_B = (
    "Labs Systems Industries Holdings Analytics Logistics Foods Health Energy Media Robotics "
    "Capital Software Networks Partners"
)
_PRODUCT_A = (
    "Smart Classic Ultra Eco Compact Deluxe Pro Mini Wireless Portable Premium Organic "
    "Vintage Turbo Quiet Solar Foldable Digital Ergonomic Waterproof"
)
_PRODUCT_B = (
    "Headphones Kettle Backpack Lamp Blender Keyboard Sneakers Notebook Speaker Bottle "
    "Camera Chair Jacket Watch Tent Drone Toaster Mug Blanket Router Charger Scooter Puzzle Telescope"
)

_STREET = {
    "en_US": "Main Oak Pine Maple Cedar Elm Washington Lake Hill Park Sunset Lincoln Jackson River "
    "Church Willow Highland Franklin Madison Chestnut",
    "de_DE": "Haupt Schul Garten Bahnhof Dorf Berg Kirch Wald Ring Lindenallee Birken Mozart Goethe "
    "Schiller Rosen Wiesen",
    "fr_FR": "Victor_Hugo Jean_Jaures Pasteur Gambetta Voltaire Moliere de_la_Republique de_la_Paix "
    "des_Lilas du_Moulin de_la_Gare des_Ecoles",
}
_STREET_TYPE = {
    "en_US": "St Ave Rd Blvd Ln Dr Way Ct",
    "de_DE": "strasse weg gasse platz",
    "fr_FR": "rue avenue boulevard allee place",
}
_JOB = (
    "Data_Engineer Software_Engineer Product_Manager Nurse Teacher Accountant Sales_Representative "
    "Graphic_Designer Electrician Mechanic Pharmacist Physician Lawyer Architect Chef Barista "
    "Marketing_Manager HR_Specialist Financial_Analyst Research_Scientist Photographer Pilot "
    "Civil_Engineer Dentist Librarian Translator Consultant Logistics_Coordinator Web_Developer "
    "Customer_Support_Agent Operations_Manager Statistician Veterinarian Social_Worker Plumber"
)
_REVIEW_A = (
    "Great Decent Disappointing Excellent Okay Terrible Solid Surprisingly_good "
    "Not_worth_it Fantastic Average Reliable"
)
_REVIEW_B = (
    "product, would buy again. | quality for the price. | build, but shipping was slow. | "
    "value overall. | experience, support was helpful. | item, arrived damaged. | "
    "choice for everyday use. | purchase, exactly as described."
)
_USER_WORDS = (
    "swift silent brave lucky happy cosmic pixel iron blue red green tiny mega "
    "fox owl wolf tiger panda falcon otter comet river stone"
)

#: Reserved example domains: never a real person's address.
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "inbox.test")


def _words(text: str) -> list[str]:
    return [w.replace("_", " ") for w in text.split()]


def _cross(left: list[str], right: list[str]) -> list[str]:
    return [f"{a} {b}" for a in left for b in right]


def _cross_raw(names: list[str], kinds: list[str], locale: str) -> list[str]:
    if locale == "de_DE":
        return [f"{n}{k}" for n in names for k in kinds]
    if locale == "fr_FR":
        return [f"{k} {n}" for n in names for k in kinds]
    return [f"{n} {k}" for n in names for k in kinds]


def _source(vocab: str, locale: str) -> list[str]:
    loc = locale if locale in _FIRST else "en_US"
    builders = {
        "first_name": lambda: _words(_FIRST[loc]),
        "last_name": lambda: _words(_LAST[loc]),
        "full_name": lambda: _cross(_words(_FIRST[loc]), _words(_LAST[loc])),
        "city": lambda: _words(_CITY[loc]),
        "country": lambda: _words(_COUNTRY),
        "company": lambda: _cross(_COMPANY_A.split(), _COMPANY_B.split()),
        "product": lambda: _cross(_PRODUCT_A.split(), _PRODUCT_B.split()),
        "email_domain": lambda: list(EMAIL_DOMAINS),
        "street": lambda: _cross_raw(_words(_STREET[loc]), _STREET_TYPE[loc].split(), loc),
        "job": lambda: _words(_JOB),
        "review": lambda: [f"{a} {b.strip()}" for a in _words(_REVIEW_A) for b in _REVIEW_B.split("|")],
        "username_word": lambda: [
            f"{a}_{b}" for a in _USER_WORDS.split()[:13] for b in _USER_WORDS.split()[13:]
        ],
        "url_host": lambda: [
            c.lower().replace(" ", "-") for c in _cross(_COMPANY_A.split(), _COMPANY_B.split())
        ],
    }
    return builders[vocab]()


@cache
def pool(vocab: str, locale: str = "en_US") -> pa.Array:
    """The deduplicated pool of values for a vocabulary, as an Arrow string array."""
    values = list(dict.fromkeys(_source(vocab, locale)))
    return pa.array(values, type=pa.string())
