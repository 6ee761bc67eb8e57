#!/usr/bin/env python3
"""Generates the guard detector's labelled corpus: tests/fixtures/guard/corpus.jsonl.

Each line is {"text": ..., "entities": [{"type": "EMAIL", "value": "..."}]}; every value appears
verbatim in its text. Prompts mix prose in several languages (EN, DE, FR, ES, IT, NL, PT, and some
ZH/JA/RU) with zero or more entities in varied formats, and hard negatives that look like entities
but are not: order and tracking numbers failing Luhn or outside card ranges, version strings and
OIDs shaped like IPs, ISBNs, dates without birth context, hex hashes, UUIDs, prices, timestamps,
MAC addresses, sentences about passwords without a value, masked or templated passwords, and
placeholders such as [EMAIL_1].

Deterministic (fixed seed, stdlib only). Run from the repository root:
    python3 scripts/guard-corpus.py
"""
import base64
import json
import os
import random
import string

SEED = 15
COUNT = 3000
R = random.Random(SEED)
OUT = os.path.join("tests", "fixtures", "guard", "corpus.jsonl")

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"


def rs(chars, n):
    return "".join(R.choice(chars) for _ in range(n))


def luhn_complete(prefix, length):
    body = prefix + "".join(R.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for d in string.digits:
        if luhn_ok(body + d):
            return body + d
    raise AssertionError


def luhn_ok(num):
    total = 0
    for i, ch in enumerate(reversed(num)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# --- PII values ------------------------------------------------------------------------------

FIRST = ["john", "maria", "li", "anna", "pierre", "jose", "giulia", "sven", "fatima", "noah", "yuki", "olga"]
LAST = ["smith", "mueller", "dupont", "garcia", "rossi", "jansen", "silva", "chen", "kowalski", "novak"]
DOMAINS = ["example.com", "mail.example.org", "corp.io", "beispiel.de", "exemple.fr", "ejemplo.es",
           "uni-bonn.de", "company.co.uk", "startup.ai", "post.example.net"]


def email():
    f, l = R.choice(FIRST), R.choice(LAST)
    local = R.choice([f"{f}.{l}", f"{f}{l}", f"{f[0]}{l}", f"{f}_{l}{R.randint(1, 99)}", f"{f}+news", f"{l}.{f}"])
    return f"{local}@{R.choice(DOMAINS)}"


def phone():
    kind = R.randrange(12)
    n = lambda k: rs(string.digits, k)
    area = str(R.randint(201, 989))
    if kind == 0:
        return f"({area}) {R.randint(200, 999)}-{n(4)}"
    if kind == 1:
        return f"{area}-{R.randint(200, 999)}-{n(4)}"
    if kind == 2:
        return f"+1 {area} {R.randint(200, 999)} {n(4)}"
    if kind == 3:
        return f"+1-{area}-{R.randint(200, 999)}-{n(4)}"
    if kind == 4:
        return f"+44 20 7946 {n(4)}"
    if kind == 5:
        return f"07700 900{n(3)}"
    if kind == 6:
        return f"+49 30 {n(7)}"
    if kind == 7:
        return f"0151 {n(8)}"
    if kind == 8:
        return f"0{R.randint(1, 5)} {n(2)} {n(2)} {n(2)} {n(2)}"
    if kind == 9:
        return f"+33 6 {n(2)} {n(2)} {n(2)} {n(2)}"
    if kind == 10:
        return f"+34 6{n(2)} {n(3)} {n(3)}"
    return f"+39 06 {n(4)} {n(4)}"


CARD_NETS = [("4", 16), ("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15),
             ("37", 15), ("6011", 16), ("65", 16), ("3530", 16), ("36", 14), ("62", 16), ("6759", 16)]


def card():
    prefix, length = R.choice(CARD_NETS)
    num = luhn_complete(prefix, length)
    style = R.randrange(3)
    if style == 0:
        return num
    sep = " " if style == 1 else "-"
    if length == 15:
        groups = [num[:4], num[4:10], num[10:]]
    elif length == 14:
        groups = [num[:4], num[4:10], num[10:]]
    else:
        groups = [num[i:i + 4] for i in range(0, length, 4)]
    return sep.join(groups)


IBAN_FMT = {"DE": "n18", "GB": "a4n14", "FR": "n10c11n2", "ES": "n20", "IT": "a1n10c12", "NL": "a4n10",
            "CH": "n5c12", "AT": "n16", "BE": "n12", "PL": "n24"}


def iban():
    cc = R.choice(list(IBAN_FMT))
    fmt = IBAN_FMT[cc]
    bban = ""
    i = 0
    while i < len(fmt):
        kind = fmt[i]
        j = i + 1
        while j < len(fmt) and fmt[j].isdigit():
            j += 1
        k = int(fmt[i + 1:j])
        chars = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}[kind]
        bban += rs(chars, k)
        i = j
    num = "".join(str(int(c, 36)) for c in bban + cc + "00")
    check = 98 - int(num) % 97
    value = f"{cc}{check:02d}{bban}"
    if R.random() < 0.5:
        value = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
    return value


def ssn_digits():
    while True:
        area = R.randint(1, 899)
        if area != 666:
            return f"{area:03d}", f"{R.randint(1, 99):02d}", f"{R.randint(1, 9999):04d}"


def ssn():
    a, g, s = ssn_digits()
    return R.choice([f"{a}-{g}-{s}", f"{a}-{g}-{s}", f"{a} {g} {s}"])


def ipv4():
    return ".".join(str(x) for x in [R.choice([10, 172, 192, 203, 8, 34, 52, 81, 100]), R.randint(0, 255),
                                      R.randint(0, 255), R.randint(1, 254)])


def ipv6():
    groups = [f"{R.randint(0, 0xffff):x}" for _ in range(8)]
    style = R.randrange(3)
    if style == 0:
        return ":".join(groups)
    if style == 1:
        return "2001:db8:" + ":".join(groups[:2]) + "::" + groups[7]
    return "fe80::" + ":".join(groups[4:])


MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"],
    "de": ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"],
    "fr": ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"],
    "es": ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
           "noviembre", "diciembre"],
    "it": ["gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre",
           "ottobre", "novembre", "dicembre"],
}


def date(lang, year=None):
    y = year or R.randint(1940, 2006)
    m = R.randint(1, 12)
    d = R.randint(1, 28)
    style = R.randrange(4)
    if style == 0:
        return f"{d:02d}.{m:02d}.{y}"
    if style == 1:
        return f"{m:02d}/{d:02d}/{y}" if lang == "en" else f"{d:02d}/{m:02d}/{y}"
    if style == 2:
        return f"{y}-{m:02d}-{d:02d}"
    months = MONTHS.get(lang, MONTHS["en"])
    name = months[m - 1]
    if lang == "en":
        return R.choice([f"{d} {name} {y}", f"{name} {d}, {y}"])
    if lang == "de":
        return f"{d}. {name} {y}"
    if lang == "es":
        return f"{d} de {name} de {y}"
    return f"{d} {name} {y}"


DOB_CTX = {
    "en": ["I was born on {}", "DOB: {}", "Date of birth: {}", "born {}", "my birthday is {}"],
    "de": ["geboren am {}", "Geburtsdatum: {}", "geb. {}"],
    "fr": ["née le {}", "né le {}", "date de naissance : {}"],
    "es": ["nacido el {}", "nacida el {}", "fecha de nacimiento: {}"],
    "it": ["nato il {}", "data di nascita: {}"],
}

# --- secrets ---------------------------------------------------------------------------------


def aws_access():
    return R.choice(["AKIA", "ASIA"]) + rs(string.ascii_uppercase + string.digits, 16)


def aws_secret():
    while True:
        v = rs(B64, 40)
        if any(c.isupper() for c in v) and any(c.islower() for c in v) and any(c.isdigit() for c in v):
            return v


def api_key():
    style = R.randrange(3)
    if style == 0:
        return "sk-" + rs(ALNUM, 48)
    if style == 1:
        return "sk-proj-" + rs(ALNUM + "_-", 40) + rs(ALNUM, 4)
    return "sk-ant-api03-" + rs(ALNUM + "_-", 80) + "AA"


def github():
    if R.random() < 0.8:
        return R.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + rs(ALNUM, 36)
    return "github_pat_" + rs(ALNUM, 22) + "_" + rs(ALNUM, 59)


def gitlab():
    return "glpat-" + rs(ALNUM + "-_", 18) + rs(ALNUM, 2)


def slack():
    if R.random() < 0.7:
        return f"xox{R.choice('bpar')}-{rs(string.digits, 12)}-{rs(string.digits, 12)}-{rs(ALNUM, 24)}"
    return f"https://hooks.slack.com/services/T{rs(string.ascii_uppercase + string.digits, 8)}/B{rs(string.ascii_uppercase + string.digits, 8)}/{rs(ALNUM, 24)}"


def stripe():
    return R.choice(["sk_live_", "rk_live_", "sk_test_"]) + rs(ALNUM, 24)


def b64url(data):
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def jwt():
    header = b64url(json.dumps({"alg": R.choice(["HS256", "RS256"]), "typ": "JWT"}))
    payload = b64url(json.dumps({"sub": str(R.randint(1000, 99999)), "name": R.choice(FIRST), "iat": R.randint(1600000000, 1700000000)}))
    return f"{header}.{payload}.{rs(ALNUM + '-_', 43)}"


def pem(escaped):
    kind = R.choice(["RSA ", "EC ", "", "OPENSSH "])
    nl = "\\n" if escaped else "\n"
    lines = [rs(B64, 64) for _ in range(R.randint(2, 5))]
    return f"-----BEGIN {kind}PRIVATE KEY-----{nl}" + nl.join(lines) + f"{nl}-----END {kind}PRIVATE KEY-----"


def password():
    words = ["Summer", "Winter", "Tiger", "Blue", "Kaffee", "Soleil", "Luna", "Dragon", "Pass", "Secure"]
    return R.choice([
        f"{R.choice(words)}{R.randint(10, 2030)}{R.choice('!@#$%&*?')}",
        rs(ALNUM, R.randint(8, 14)) + str(R.randint(0, 9)),
        f"{R.choice(words).lower()}{R.randint(1, 99)}",
        f"Tr0ub4dor&{R.randint(1, 9)}",
    ])


def azure():
    if R.random() < 0.6:
        key = rs(B64, 86) + "=="
        acct = R.choice(["prodstore", "backup01", "mediaacct"])
        return (f"DefaultEndpointsProtocol=https;AccountName={acct};AccountKey={key};EndpointSuffix=core.windows.net", key)
    key = rs(B64, 43) + "="
    return (f"Endpoint=sb://ns{R.randint(1, 99)}.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={key}", key)


# --- sentences -------------------------------------------------------------------------------

FILLER = {
    "en": ["Can you help me rewrite this paragraph?", "Please summarise the thread below in three bullet points.",
           "We shipped the new release last week and the feedback has been good.", "Keep the tone friendly but precise.",
           "The meeting moved to Thursday afternoon.", "I need a short reply for the customer.",
           "Translate the following into plain English.", "Our team of 12 people handled 340 tickets in March."],
    "de": ["Kannst du mir helfen, diesen Text zu verbessern?", "Bitte fasse die folgende E-Mail kurz zusammen.",
           "Die Lieferung für München kommt am Montag gegen 14 Uhr.", "Vielen Dank für Ihre Geduld und Grüße aus Köln.",
           "Wir haben 3 Angebote verglichen und uns für das günstigste entschieden."],
    "fr": ["Peux-tu m'aider à reformuler ce message ?", "Merci de résumer ce document en français.",
           "La réunion est reportée à jeudi après-midi.", "Nous avons reçu 25 commandes cette semaine, c'est très bien."],
    "es": ["¿Puedes ayudarme a redactar este correo?", "Resume el siguiente texto en dos frases, por favor.",
           "La reunión se movió al jueves por la tarde.", "Gracias por tu ayuda con el informe de ventas."],
    "it": ["Puoi aiutarmi a riscrivere questo paragrafo?", "Grazie per la pazienza, ci sentiamo domani.",
           "La riunione è stata spostata a giovedì."],
    "nl": ["Kun je deze tekst korter maken?", "Bedankt voor je hulp met het rapport."],
    "pt": ["Você pode me ajudar a revisar este e-mail?", "Obrigado pela ajuda com o relatório."],
    "zh": ["请帮我把这段话改写得更正式一些。", "谢谢你的帮助，我们明天再联系。"],
    "ja": ["この文章をもっと丁寧に書き直してください。", "ご協力ありがとうございます。"],
    "ru": ["Помоги, пожалуйста, переписать этот абзац.", "Спасибо за помощь с отчётом."],
}

INTRO = {
    "EMAIL": {"en": ["You can reach me at {}.", "Send the invoice to {} please.", "Contact: {}"],
              "de": ["Meine E-Mail-Adresse ist {}.", "Schreib mir an {}."], "fr": ["Mon adresse e-mail est {}."],
              "es": ["Mi correo es {}."], "it": ["La mia email è {}."], "zh": ["我的邮箱是 {} 。"]},
    "PHONE": {"en": ["Call me at {}.", "My number is {}", "Phone: {}"], "de": ["Ruf mich unter {} an.", "Telefon: {}"],
              "fr": ["Appelez-moi au {}.", "Tél. : {}"], "es": ["Llámame al {}.", "Teléfono: {}"],
              "it": ["Il mio numero è {}."]},
    "CARD": {"en": ["My card number is {}.", "Charge it to {} please.", "card: {}"], "de": ["Meine Kartennummer ist {}."],
             "fr": ["Ma carte bancaire : {}."], "es": ["Mi tarjeta es {}."]},
    "IBAN": {"en": ["Please transfer the money to {}.", "IBAN: {}"], "de": ["Bitte überweisen Sie an {}.", "IBAN {}"],
             "fr": ["Mon IBAN est {}."], "es": ["Mi IBAN es {}."], "it": ["IBAN: {}"], "nl": ["Mijn IBAN is {}."]},
    "SSN": {"en": ["My SSN is {}.", "social security number: {}", "SSN {}"]},
    "IP_ADDRESS": {"en": ["The server is at {}.", "Requests come from {} only.", "ip={}"], "de": ["Der Server hat die Adresse {}."],
                   "fr": ["L'adresse du serveur est {}."]},
}

SECRET_LINES = {
    "AWS_ACCESS_KEY": ["aws_access_key_id = {}", "My access key is {} - is it still valid?", "export AWS_ACCESS_KEY_ID={}"],
    "API_KEY": ["OPENAI_API_KEY={}", "Why does my key {} return 401?", 'api_key = "{}"'],
    "GITHUB_TOKEN": ["git clone https://{}@github.com/acme/app.git", "GITHUB_TOKEN={}", "token: {}"],
    "GITLAB_TOKEN": ["PRIVATE-TOKEN: {}", "gitlab token {} stopped working"],
    "SLACK_TOKEN": ["SLACK_BOT_TOKEN={}", "post to {} from the CI job"],
    "STRIPE_KEY": ["stripe.api_key = '{}'", "STRIPE_SECRET_KEY={}"],
    "JWT": ["Authorization: Bearer {}", "this token fails to verify: {}"],
}

PASSWORD_LINES = {
    "en": ["password: {}", "Password={}", "pwd={}", "passwd: {}", "DB_PASSWORD={}", "my password is {}",
           '{{"username": "admin", "password": "{}"}}'],
    "de": ["Passwort: {}", "mein Passwort ist {}", "Kennwort: {}"],
    "fr": ["mot de passe : {}", "mon mot de passe est {}"],
    "es": ["contraseña: {}", "mi contraseña es {}"],
}

NEGATIVES = [
    lambda: f"Order #{bad_luhn(16, grouped=True)} has shipped.",
    lambda: f"Tracking number {bad_luhn(16)} (DHL).",
    lambda: f"Reference {luhn_complete(R.choice(['1', '9', '8']), 16)} in your records.",
    lambda: f"Please upgrade to version {R.randint(1, 12)}.{R.randint(0, 9)}.{R.randint(0, 20)}.{R.randint(0, 99)}.",
    lambda: f"Running v{R.randint(1, 9)}.{R.randint(0, 9)}.{R.randint(0, 9)}.{R.randint(0, 9)} in production.",
    lambda: f"The OID is 1.3.6.1.4.1.{R.randint(1000, 60000)}.",
    lambda: f"Build {R.randint(1, 9)}.{R.randint(0, 9)}.{R.randint(0, 9)}.{R.randint(0, 9)}.{R.randint(0, 9)} fixed it.",
    lambda: f"ISBN 978-3-16-{R.randint(100000, 999999)}-{R.randint(0, 9)}",
    lambda: f"The deadline is {date('en', 2025)}.",
    lambda: f"Die Rechnung vom {date('de', 2024)} ist noch offen.",
    lambda: f"La facture du {date('fr', 2023)} est payée.",
    lambda: f"commit {rs('0123456789abcdef', 40)}",
    lambda: f"sha256: {rs('0123456789abcdef', 64)}",
    lambda: f"request id {rs('0123456789abcdef', 8)}-{rs('0123456789abcdef', 4)}-4{rs('0123456789abcdef', 3)}-a{rs('0123456789abcdef', 3)}-{rs('0123456789abcdef', 12)}",
    lambda: f"It costs ${R.randint(1, 9)},{R.randint(100, 999)}.{R.randint(10, 99)} or {R.randint(1, 999)},{R.randint(10, 99)} €.",
    lambda: f"The job ran at {R.randint(10, 23)}:{R.randint(10, 59)}:{R.randint(10, 59)} on node 7.",
    lambda: f"MAC {':'.join(rs('0123456789ABCDEF', 2) for _ in range(6))}",
    lambda: "I forgot my password, how do I reset it?",
    lambda: "The password must be at least 12 characters long.",
    lambda: "password: ********",
    lambda: "password=${DB_PASSWORD}",
    lambda: "Passwort vergessen? Klicken Sie auf den Link.",
    lambda: "Le mot de passe est incorrect.",
    lambda: "Use a password manager; never reuse a password.",
    lambda: "sk-this-is-not-a-real-key-at-all",
    lambda: f"Invoice INV-2024-{R.randint(100000, 999999)} is due.",
    lambda: f"Call extension {R.randint(100, 9999)} between 9 and 5.",
    lambda: f"Zip code {R.randint(10000, 99999)}, room {R.randint(100, 999)}.",
    lambda: f"Account number {R.randint(100000000, 999999999)} at the branch.",
    lambda: f"SSN-like but invalid: {R.choice(['000', '666', '9' + rs(string.digits, 2)])}-{rs(string.digits, 2)}-{rs(string.digits, 4)}",
    lambda: f"Already redacted: [EMAIL_{R.randint(1, 9)}], [CARD_{R.randint(1, 20)}] and [PHONE_{R.randint(1, 9)}].",
    lambda: "He was born and raised in Texas and moved to Berlin in 2015.",
    lambda: f"Measured {R.randint(1, 99)}.{R.randint(0, 99)} ms at p99 over {R.randint(2, 9)} runs.",
    lambda: f"Coordinates 48.{rs(string.digits, 4)}, 11.{rs(string.digits, 4)}.",
    lambda: f"Use std::collections::HashMap and a::b::c in Rust.",
    lambda: f"Score: {R.randint(1, 9)}-{R.randint(0, 9)}, attendance {R.randint(10, 90)} {R.randint(100, 999)}.",
]



# Formats and traps the detector was not tuned on one by one: realistic variety, some of which it
# misses (lowercase IBANs, `pass:`, URL credentials) or misreads (4-part versions with small
# numbers, product codes shaped like phone numbers, `password: see …`). They keep the measured
# figures honest.
def hard_positive():
    k = R.randrange(24)
    n = lambda c: rs(string.digits, c)
    if k == 0:
        v = email(); return f"From: Maria <{v}>", [("EMAIL", v)]
    if k == 1:
        v = email().upper(); return f"REPLY TO {v} ASAP", [("EMAIL", v)]
    if k == 2:
        v = email(); return f"(mailto:{v}), thanks", [("EMAIL", v)]
    if k == 3:
        v = f"{R.randint(201, 989)}.{R.randint(200, 999)}.{n(4)}"; return f"cell {v}", [("PHONE", v)]
    if k == 4:
        v = f"+44 (0)20 7946 {n(4)}"; return f"Tel {v} (office)", [("PHONE", v)]
    if k == 5:
        v = f"(030) {n(3)} {n(3)} {n(2)}"; return f"Telefon {v}", [("PHONE", v)]
    if k == 6:
        v = f"0{R.randint(30, 89)}/{n(7)}"; return f"Fax: {v}", [("PHONE", v)]
    if k == 7:
        v = f"+336{n(8)}"; return f"WhatsApp {v}", [("PHONE", v)]
    if k == 8:
        v = luhn_complete("4", 16); return f"paid with card ({v}).", [("CARD", v)]
    if k == 9:
        v = luhn_complete("37", 15); return f"Amex {v}, exp 11/27", [("CARD", v)]
    if k == 10:
        v = iban().lower(); return f"iban {v}", [("IBAN", v)]
    if k == 11:
        v = iban(); return f"IBAN {v} BIC DEUTDEFFXXX", [("IBAN", v)]
    if k == 12:
        v = ipv4(); return f"GET http://{v}:8080/health", [("IP_ADDRESS", v)]
    if k == 13:
        v = ipv4(); return f"allow {v}/24 in the firewall", [("IP_ADDRESS", v)]
    if k == 14:
        v = "2001:db8::" + f"{R.randint(1, 0xffff):x}"; return f"connect to [{v}]:443", [("IP_ADDRESS", v)]
    if k == 15:
        v = f"{R.randint(1, 12)}/{R.randint(1, 28)}/{R.randint(40, 99)}"; return f"DOB {v}", [("DOB", v)]
    if k == 16:
        v = date("en"); return f"Birthday: {v}", [("DOB", v)]
    if k == 17:
        v = date("en"); return f"my son was born on {v} in Leeds", [("DOB", v)]
    if k == 18:
        v = password(); return f"password='{v}'", [("PASSWORD", v)]
    if k == 19:
        v = password(); return f"Password : {v}", [("PASSWORD", v)]
    if k == 20:
        v = password(); return f"pass: {v}", [("PASSWORD", v)]
    if k == 21:
        v = "S3cr3t" + n(3); return f"postgres://admin:{v}@db.internal:5432/app", [("PASSWORD", v)]
    if k == 22:
        a, g, s2 = ssn_digits(); v = a + g + s2; return f"SSN#{v}", [("SSN", v)]
    v = api_key(); return f'headers = {{"Authorization": "Bearer {v}"}}', [("API_KEY", v)]


HARD_NEGATIVES = [
    lambda: f"Chrome {R.randint(100, 130)}.0.{R.randint(4000, 6999)}.{R.randint(10, 200)} crashes on start.",
    lambda: f"Python {R.randint(2, 3)}.{R.randint(6, 12)}.{R.randint(0, 9)}.{R.randint(0, 9)} is installed.",
    lambda: f"node v{R.randint(14, 22)}.{R.randint(0, 20)}.{R.randint(0, 9)}",
    lambda: f"Windows 10.0.{R.randint(19000, 22631)}.{R.randint(1000, 4000)}",
    lambda: "DE00 0000 0000 0000 0000 00 is the test IBAN format.",
    lambda: "use the test card 4111-1111-1111-1112 for declines",
    lambda: f"Artikelnummer 0{R.randint(100, 999)}-{n4()}-{R.randint(10, 99)}",
    lambda: "password: see the vault",
    lambda: "The admin password: stored in 1Password.",
    lambda: f"Flight LH {R.randint(100, 9999)} on 12/03, gate B{R.randint(1, 40)}.",
    lambda: f"It was {R.randint(10, 35)}.5 °C at {R.randint(10, 23)}:{R.randint(10, 59)}.",
    lambda: "Born to run, but not today.",
    lambda: f"Ticket JIRA-{R.randint(1000, 99999)} and PR #{R.randint(100, 9999)}.",
    lambda: f"Serial {rs(string.ascii_uppercase, 2)}{rs(string.digits, 2)}{rs(string.ascii_uppercase + string.digits, 14)}",
    lambda: f"phone: TBD, ext. {R.randint(10, 99)}",
]


def n4():
    return rs(string.digits, 4)


def bad_luhn(n, grouped=False):
    while True:
        num = R.choice("3456") + rs(string.digits, n - 1)
        if not luhn_ok(num):
            break
    return " ".join(num[i:i + 4] for i in range(0, n, 4)) if grouped else num


def entity_sentence(kind, lang):
    """Returns (sentence, [(type, value)])."""
    if kind in INTRO:
        gen = {"EMAIL": email, "PHONE": phone, "CARD": card, "IBAN": iban, "SSN": ssn,
               "IP_ADDRESS": lambda: ipv4() if R.random() < 0.75 else ipv6()}[kind]
        value = gen()
        if kind == "SSN" and R.random() < 0.3:
            a, g, s = ssn_digits()
            value = a + g + s
            return R.choice(["SSN: {}", "my ssn is {}"]).format(value), [(kind, value)]
        templates = INTRO[kind].get(lang) or INTRO[kind]["en"]
        return R.choice(templates).format(value), [(kind, value)]
    if kind == "DOB":
        l = lang if lang in DOB_CTX else "en"
        value = date(l)
        return R.choice(DOB_CTX[l]).format(value), [(kind, value)]
    if kind == "PASSWORD":
        l = lang if lang in PASSWORD_LINES else "en"
        value = password()
        return R.choice(PASSWORD_LINES[l]).format(value), [(kind, value)]
    if kind == "AWS_SECRET_KEY":
        value = aws_secret()
        line = R.choice(["aws_secret_access_key = {}", "AWS_SECRET_ACCESS_KEY={}", "secret: {}"]).format(value)
        return line, [(kind, value)]
    if kind == "GCP_KEY":
        kid = rs("0123456789abcdef", 40)
        key = pem(escaped=True)
        mail = f"svc-{R.randint(1, 99)}@my-project.iam.gserviceaccount.com"
        doc = (f'{{"type": "service_account", "project_id": "my-project", "private_key_id": "{kid}", '
               f'"private_key": "{key}\\n", "client_email": "{mail}"}}')
        return doc, [("GCP_KEY", kid), ("PRIVATE_KEY", key), ("EMAIL", mail)]
    if kind == "PRIVATE_KEY":
        key = pem(escaped=False)
        return R.choice(["Here is my key:\n{}\nwhy does ssh reject it?", "{}"]).format(key), [(kind, key)]
    if kind == "AZURE_CONNECTION_STRING":
        conn, key = azure()
        return f"connection string: {conn}", [(kind, key)]
    gen = {"AWS_ACCESS_KEY": aws_access, "API_KEY": api_key, "GITHUB_TOKEN": github, "GITLAB_TOKEN": gitlab,
           "SLACK_TOKEN": slack, "STRIPE_KEY": stripe, "JWT": jwt}[kind]
    value = gen()
    return R.choice(SECRET_LINES[kind]).format(value), [(kind, value)]


KINDS = ["EMAIL"] * 4 + ["PHONE"] * 4 + ["CARD"] * 3 + ["IBAN"] * 3 + ["SSN"] * 2 + ["IP_ADDRESS"] * 3 + \
        ["DOB"] * 3 + ["PASSWORD"] * 3 + ["AWS_ACCESS_KEY", "AWS_SECRET_KEY", "GCP_KEY", "AZURE_CONNECTION_STRING",
                                          "API_KEY", "API_KEY", "GITHUB_TOKEN", "GITLAB_TOKEN", "SLACK_TOKEN",
                                          "STRIPE_KEY", "PRIVATE_KEY", "JWT"]
LANGS = ["en"] * 5 + ["de"] * 2 + ["fr"] * 2 + ["es"] * 2 + ["it", "nl", "pt", "zh", "ja", "ru"]


def prompt():
    lang = R.choice(LANGS)
    fill_lang = lang if lang in FILLER else "en"
    parts = [R.choice(FILLER[fill_lang]) for _ in range(R.randint(1, 4))]
    labels = []
    roll = R.random()
    n = 0 if roll < 0.3 else 1 if roll < 0.7 else R.randint(2, 3)
    for _ in range(n):
        if R.random() < 0.15:
            sentence, ents = hard_positive()
        else:
            sentence, ents = entity_sentence(R.choice(KINDS), lang)
        parts.insert(R.randint(0, len(parts)), sentence)
        labels.extend(ents)
    for _ in range(R.choice([0, 0, 1, 1, 2])):
        pool = HARD_NEGATIVES if R.random() < 0.3 else NEGATIVES
        parts.insert(R.randint(0, len(parts)), R.choice(pool)())
    text = R.choice([" ", "\n", "\n\n"]).join(parts)
    for _, v in labels:
        assert v in text, v
    return {"text": text, "entities": [{"type": t, "value": v} for t, v in labels]}


def main():
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        for _ in range(COUNT):
            f.write(json.dumps(prompt(), ensure_ascii=False) + "\n")
    print(f"wrote {COUNT} prompts to {OUT}")


if __name__ == "__main__":
    main()
