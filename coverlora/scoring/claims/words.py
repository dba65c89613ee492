"""Word lists of the claim checker: words that carry no checkable content in a cover letter.

STOP_WORDS are function words. GENERIC_WORDS are what nearly every letter says whatever the applicant did
("strong experience", "proven track record", "valuable asset") and personality words ("dedicated", "motivated"):
a claim is checked on its other words. Degree and certification words are here because those claims are
checked exactly (grounding's vocabulary, claim_evidence's certification rule). Number words are handled by
the years rule. The boilerplate list was read off the most frequent words that train letters add to their
rows (scripts/calibrate_claims.py's labelled rows left out). Lowercase, as text.padded_words writes words ("I'm" -> "i", "m").
"""

STOP_WORDS = frozenset("""
a an the and or but nor so yet of in on at to for with by from as into onto about over under through throughout
during within without across via per than then that this these those which who whom whose what when where while
how why i me my mine myself we us our ours you your yours he she it its they them their is am are was were be
been being have has had having do does did doing will would shall should can could may might must not no also
very well such other both each all any some more most many much own same just only even further furthermore
additionally moreover including include includes like s t ve m d ll re there here if because since until
whether again always currently current previously previous past recent recently now new one etc
""".split())

GENERIC_WORDS = frozenset("""
experience experiences experienced skill skills skilled skillset skillsets strong solid extensive background
ability abilities able proven track record excellent exceptional outstanding great good deep broad keen
passion passionate dedicated dedication commitment committed team teams work works working worked role roles
position positions job jobs opportunity opportunities company companies organization organizations organisation
contribute contributing contributed contribution contributions success successful successfully effectively
effective efficient efficiently valuable value asset assets confident confidence believe belief excited
excitement eager eagerness enthusiastic enthusiasm knowledge knowledgeable expertise expert proficient
proficiency highly high motivated motivation various variety wide range year years field fields area areas
industry industries professional professionals professionally career careers candidate candidates fit ideal
necessary required requirement requirements qualification qualifications qualified qualify hands gained gain
gaining acquired acquire honed hone demonstrated demonstrate demonstrating utilized utilize utilizing utilise
leveraged leverage leveraging applied apply applying allowed allow allows enabled enable enables equipped
helped help helping ensure ensuring ensured make makes made making use used using possess possesses hold holds
held bring brings brought get got become became continue continued learn learning learned grow growing
growth improve improving improvement enhance enhancing enhanced develop developed developing development
dynamic fast paced environment environments detail details oriented diligent hardworking hard reliable
dependable organized organised proactive driven curious creative adaptable flexible quick learner positive
responsible self independent independently ensure thrive thriving collaborative environment mission values
culture goals goal needs need align aligns aligned closely directly particularly especially truly greatly
deeply sincerely certain sure strongly firmly always constantly continuously continually consistently
approach approaches mindset attitude personal people person individual individuals others someone things
thing way ways part lot number numerous multiple several many various key core critical important
essential crucial relevant related similar specific overall daily day successfully expertly hard-working
opportunity application applications interest interested consider considering considered thank thanks
discuss discussing further look looking forward hear hearing chance welcome possibility join joining
sincerely regards best dear hiring manager letter resume cv attached enclosed apply applied writing write
express expressing strive striving provide providing provided deliver delivering delivered achieve achieving
achieved results result outcomes understand understanding technology technologies technical robust solution
solutions complex complexity issue issues insight insights drive drives driving time budget quality track
member members guidance enjoy enjoyed love like passionate solving problem problems challenge challenges
challenging innovative innovation spectrum finding find excel excelling impact impactful meaningful
crossfunctional highquality wellequipped wellsuited cuttingedge datadriven fastpaced longterm handson
stateoftheart topnotch worldclass endtoend build builds built building create creates created creating
implement implements implemented implementing execute executed executing suit suited suits foundation
foundations identify identified identifying along combined combine combining focus focused focusing set
actionable addition latest stay staying given coupled significant significantly take taking seek seeking
ready readiness prior tackle tackling adept potential up clear clearly known base based involve involved
involving date level levels think thinking share sharing different existing real case cases full fully
showcase showcasing top player every attention seasoned comprehensive objective objectives perfect perfectly proud
fresh perspective perspectives better future world prospect decision decisions decisionmaking informed
advanced large larger degree degrees bachelor bachelors master masters certified certification
certifications crossfunctional cross functional decisionmaking detailoriented employ employed perform performed
keep keeping technique techniques
""".split())

# Acronyms that resumes and letters write either way ("PhD in AI" backs "Artificial Intelligence").
ACRONYMS = {
    "ai": "artificial intelligence", "ml": "machine learning", "dl": "deep learning",
    "nlp": "natural language processing", "bi": "business intelligence", "cs": "computer science",
    "it": "information technology", "qa": "quality assurance", "ux": "user experience", "ui": "user interface",
    "hr": "human resources", "pm": "project management", "seo": "search engine optimization",
}

# Compounds written with a space, a hyphen or nothing: one word for the checker ("problem-solving" in the
# resume backs "problem solver" in the letter).
COMPOUNDS = {
    r"problem[\s-]?solv\w*": "problemsolving",
    r"cross[\s-]?functional": "crossfunctional",
    r"decision[\s-]?making": "decisionmaking",
    r"detail[\s-]?oriented": "detailoriented",
}
