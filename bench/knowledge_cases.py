"""The labelled VoiceRAG set: 44 questions over `bench/knowledge_docs` with known answers.

The documents describe a made-up bike shop, so no model knows the answers beforehand: an answer
is right only if it came from retrieval. Each question names the document that answers it and
the facts a right answer contains: every group in `facts` must appear in the answer, any one of
a group's spellings ("30" or "thirty"). `kind` says what the question tests: `exact` repeats the
document's words, `paraphrase` does not, `cross` asks in another language than the document's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).parent / "knowledge_docs"
ABOUT = "Northwind Cycles' stores, bikes, prices, rentals, servicing, warranty, shipping and returns"


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    doc: str  # the document that answers it (path under DOCS)
    facts: tuple[tuple[str, ...], ...]
    kind: str = "exact"  # exact | paraphrase | cross
    language: str = "en"


def q(id: str, text: str, doc: str, *facts: str | tuple[str, ...], kind: str = "exact",
      language: str = "en") -> Question:
    return Question(id, text, doc, tuple((f,) if isinstance(f, str) else f for f in facts),
                    kind, language)


QUESTIONS: list[Question] = [
    q("hours-lisbon", "What are the opening hours of the Lisbon store on weekdays?", "stores.md",
      ("9", "nine"), ("7", "seven")),
    q("sunday-madrid", "Is the Madrid store open on Sundays?", "stores.md", ("yes", "open", "every day")),
    q("sunday-lisbon", "Can I visit the Lisbon shop on a Sunday?", "stores.md",
      ("closed", "no", "not"), kind="paraphrase"),
    q("porto-address", "What is the address of the Porto store?", "stores.md", "Santa Catarina"),
    q("parking", "Which store has its own car park?", "stores.md", "Porto", kind="paraphrase"),
    q("madrid-phone", "What is the phone number of the Madrid store?", "stores.md", "0077"),
    q("return-days", "How many days do I have to return a bike?", "returns.md", ("30", "thirty")),
    q("restocking", "What is the restocking fee if I rode the bike more than 50 kilometres?",
      "returns.md", ("15", "fifteen")),
    q("custom-return", "Can I send back a bike that was custom built for me?", "returns.md",
      ("cannot", "can't", "not", "no"), kind="paraphrase"),
    q("refund-time", "How long does it take to get my money back after a return?", "returns.md",
      ("10", "ten"), kind="paraphrase"),
    q("frame-warranty", "How long is the warranty on the frame?", "warranty.html",
      ("lifetime", "life")),
    q("component-warranty", "How many years are components like brakes and gears covered?",
      "warranty.html", ("2", "two")),
    q("battery-warranty", "What does the warranty say about e-bike batteries?", "warranty.html",
      ("3", "three")),
    q("serial-number", "Where do I find my frame's serial number?", "warranty.html",
      "bottom bracket"),
    q("tyres-covered", "Are worn out tyres covered by the guarantee?", "warranty.html",
      ("not", "no"), kind="paraphrase"),
    q("free-delivery", "From what order value is delivery free?", "shipping.txt", "150"),
    q("express-price", "How much does express delivery cost?", "shipping.txt", ("19", "nineteen")),
    q("islands-ebike", "Can you ship an e-bike to Madeira?", "shipping.txt", ("cannot", "can't", "not", "no")),
    q("assembled", "Will my bike come ready to ride or do I have to put it together?",
      "shipping.txt", ("assembled", "pedals", "handlebar"), kind="paraphrase"),
    q("tracking", "How do I track my parcel?", "shipping.txt", ("SMS", "text", "email")),
    q("aero-weight", "How much does the Aero 3 weigh?", "bikes/aero3.md", "7.9"),
    q("aero-price", "What is the price of the Aero 3?", "bikes/aero3.md", ("2,499", "2499")),
    q("aero-gears", "How many gears does the Aero 3 have?", "bikes/aero3.md", ("22", "twenty-two", "11")),
    q("aero-colours", "Which colours does the Aero 3 come in?", "bikes/aero3.md",
      ("grey", "gray", "red")),
    q("volta-range", "How far can the Volta E go on one charge?", "bikes/volta-e.md",
      ("110", "one hundred and ten"), kind="paraphrase"),
    q("volta-charge", "How long does it take to charge the Volta E battery?", "bikes/volta-e.md",
      ("4", "four")),
    q("volta-speed", "Up to what speed does the electric bike's motor help?", "bikes/volta-e.md",
      ("25", "twenty-five"), kind="paraphrase"),
    q("volta-price", "How much is the Volta E?", "bikes/volta-e.md", ("3,290", "3290")),
    q("rent-city", "How much does it cost to rent a city bike for a day?", "rentals.txt",
      ("15", "fifteen")),
    q("rent-deposit", "Is there a deposit when I hire a bike?", "rentals.txt", ("200", "two hundred"),
      kind="paraphrase"),
    q("rent-age", "How old do you need to be to rent a bike?", "rentals.txt", ("16", "sixteen")),
    q("first-service", "Is the first service free?", "service.pdf", ("free", "60", "sixty")),
    q("full-service", "What does a full service cost?", "service.pdf", "129"),
    q("club-price", "How much is the Northwind Club membership a year?", "membership.html",
      ("35", "thirty-five")),
    q("group-ride", "When does the free group ride leave?", "membership.html",
      ("8", "eight", "first Saturday")),
    q("payment-methods", "Which payment methods do you accept?", "pagos.md",
      ("PayPal", "MB Way", "Visa", "Mastercard"), kind="cross"),
    q("financing", "Can I pay for an expensive bike in instalments?", "pagos.md",
      ("12", "twelve"), kind="cross"),
    q("part-4471", "How much is part NW-4471?", "parts.txt", ("24", "twenty-four"), kind="code"),
    q("part-2210", "What is part NW-2210?", "parts.txt", "chain", kind="code"),
    q("part-8808", "What does NW-8808 cost?", "parts.txt", "119", kind="code"),
    q("part-3103", "Price of NW-3103, please.", "parts.txt", ("7", "seven"), kind="code"),
    q("es-devolucion", "¿Cuántos días tengo para devolver una bicicleta?", "returns.md",
      ("30", "thirty", "treinta"), kind="cross", language="es"),
    q("es-alquiler", "¿Cuánto cuesta alquilar una bicicleta eléctrica por día?", "rentals.txt",
      ("35", "thirty-five", "treinta y cinco"), kind="cross", language="es"),
    q("fr-garantie", "Combien de temps la batterie d'un vélo électrique est-elle garantie ?",
      "warranty.html", ("3", "three", "trois"), kind="cross", language="fr"),
]
