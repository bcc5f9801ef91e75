"""English open-ended prompts for the general set (written for tunesmith).

The templated tasks alone are too narrow: a tiny model trained on them plus identity data answers
*any* unfamiliar request ("write a poem", "give me tips") with its name. These families teach it
that explanations, advice, writing requests, translations and lists get ordinary answers.
Topics used by ``general_eval`` (haiku, rain, the sea, sleep, photosynthesis, ...) are left out.
"""

# One table row per line reads better than strings split mid-sentence.
# ruff: noqa: E501
from __future__ import annotations

CONCEPT_Q = (
    "What is {t}?",
    "Explain {t} in one sentence.",
    "Can you explain what {t} is?",
    "Tell me about {t}.",
    "What does {t} mean?",
    "Give me a short explanation of {t}.",
    "Could you describe {t} briefly?",
    "I've never understood {t}. What is it?",
    "Do you know what {t} is?",
    "In simple words, what is {t}?",
)
CONCEPTS: tuple[tuple[str, str], ...] = (
    ("gravity", "Gravity is the force that pulls masses toward each other; it keeps us on the ground and the Moon in orbit."),
    ("a volcano", "A volcano is an opening in the Earth's crust where melted rock, gas and ash escape."),
    ("an earthquake", "An earthquake is a sudden shaking of the ground when rocks slip along a fault underground."),
    ("the internet", "The internet is a worldwide network of computers that exchange data using shared rules."),
    ("a black hole", "A black hole is a region of space where gravity is so strong that not even light escapes."),
    ("electricity", "Electricity is the flow of electric charge, usually electrons moving through a wire."),
    ("democracy", "Democracy is a system of government in which citizens choose their leaders by voting."),
    ("inflation", "Inflation is a general rise in prices, so the same money buys a little less over time."),
    ("a budget", "A budget is a plan for how much money you expect to earn and spend over a period."),
    ("an algorithm", "An algorithm is a step-by-step set of instructions for solving a problem."),
    ("a database", "A database is an organised store of data that programs can search and update quickly."),
    ("a spreadsheet", "A spreadsheet is a grid of cells in rows and columns for storing and calculating numbers."),
    ("an ecosystem", "An ecosystem is a community of living things plus the air, water and soil they depend on."),
    ("evaporation", "Evaporation is a liquid turning into a gas, like a puddle drying in the sun."),
    ("a fossil", "A fossil is the preserved remains or trace of an ancient plant or animal, usually in rock."),
    ("a vaccine", "A vaccine trains the immune system to recognise a germ so the body can fight it off later."),
    ("DNA", "DNA is the molecule that carries the genetic instructions of a living thing."),
    ("a comet", "A comet is a ball of ice and dust orbiting the Sun that grows a glowing tail near it."),
    ("climate change", "Climate change is the long-term shift in Earth's temperatures and weather, driven largely by burning fossil fuels."),
    ("renewable energy", "Renewable energy comes from sources that refill naturally, such as sunlight, wind and flowing water."),
    ("a metaphor", "A metaphor describes one thing by calling it another, as in 'time is a thief'."),
    ("a paragraph", "A paragraph is a group of sentences about one idea, usually starting on a new line."),
    ("an adjective", "An adjective is a word that describes a noun, such as 'red', 'tall' or 'happy'."),
    ("a fraction", "A fraction shows part of a whole, written as one number over another, like 3/4."),
    ("a percentage", "A percentage is a number out of 100: 25 percent means 25 out of every 100."),
    ("an average", "The average (mean) is the sum of some numbers divided by how many numbers there are."),
    ("friction", "Friction is the force that resists two surfaces sliding against each other."),
    ("a cell", "A cell is the smallest living unit; every plant and animal is made of cells."),
    ("a rainbow", "A rainbow is an arc of colours formed when raindrops bend and split sunlight."),
    ("the tide", "The tide is the regular rise and fall of the sea, caused mainly by the Moon's gravity."),
    ("a compass", "A compass is a tool with a magnetic needle that points north, used to find direction."),
    ("a satellite", "A satellite is an object that orbits a planet, like the Moon or a weather satellite."),
    ("a web browser", "A web browser is a program for opening websites, such as Firefox or Chrome."),
    ("a software bug", "A software bug is a mistake in a program that makes it behave unexpectedly."),
    ("open source software", "Open source software is software whose code anyone may read, change and share."),
    ("a neural network", "A neural network is a model of layered, connected units that learns patterns from data."),
    ("overfitting", "Overfitting is when a model memorises its training data and does badly on new data."),
    ("compound interest", "Compound interest is interest earned on your savings and on the interest already added."),
    ("a mortgage", "A mortgage is a loan for buying a home, repaid with interest over many years."),
    ("jet lag", "Jet lag is the tired, out-of-sync feeling after flying across several time zones."),
    ("a time zone", "A time zone is a region that keeps the same clock time; neighbours usually differ by an hour."),
    ("meditation", "Meditation is the practice of calmly focusing attention, often on the breath."),
    ("a calorie", "A calorie is a unit of energy; food labels use it to show how much energy food gives."),
    ("protein", "Protein is a nutrient in foods like eggs, beans and meat that the body uses to build tissue."),
    ("a symphony", "A symphony is a long piece for a full orchestra, usually in several movements."),
    ("the Olympic Games", "The Olympic Games are an international sports event held every four years."),
    ("erosion", "Erosion is the slow wearing away of rock and soil by water, wind or ice."),
    ("a desert", "A desert is a region that gets very little rain; it can be hot or cold."),
    ("a glacier", "A glacier is a huge, slow-moving mass of ice formed from snow packed down over years."),
    ("the stock market", "The stock market is where people buy and sell shares of companies."),
)  # fmt: skip

HOWTO_Q = (
    "How do I {t}?",
    "How can I {t}?",
    "What's the best way to {t}?",
    "Any tips to {t}?",
    "Can you tell me how to {t}?",
    "Could you explain how to {t}?",
    "I want to {t}. Where should I start?",
    "Give me some advice on how to {t}.",
    "Do you have any tips to {t}?",
    "What should I do to {t}?",
)
HOWTO: tuple[tuple[str, str], ...] = (
    ("learn to swim", "Start in shallow water with a teacher, practise floating and breathing first, then add kicks and strokes."),
    ("keep a plant alive indoors", "Give it a bright window, water only when the top soil is dry, and use a pot that drains."),
    ("study for an exam", "Start a week early, study in short focused sessions, and test yourself instead of rereading."),
    ("save money each month", "Track what you spend, move a fixed amount to savings on payday, and cut costs you barely notice."),
    ("make friends in a new city", "Join a club or class that meets regularly, accept invitations, and suggest coffee after a few meetings."),
    ("get better at public speaking", "Learn your first and last lines by heart, rehearse out loud, and speak a little slower than feels natural."),
    ("write a good email", "Use a clear subject line, put your request in the first two sentences, and keep it short."),
    ("clean a cast iron pan", "Rinse it with hot water and a brush, dry it on the stove, and rub in a thin layer of oil."),
    ("start running", "Alternate one minute of running with one of walking, ten times, three days a week, and build up slowly."),
    ("remember names better", "Repeat the name when you hear it, link it to something about the person, and use it again before leaving."),
    ("focus while working from home", "Keep a fixed start time, work in one spot, put your phone in another room, and take short breaks."),
    ("cook rice in a pot", "Rinse one cup of rice, add one and a half cups of water, boil, then cover and simmer on low for 15 minutes."),
    ("speed up a slow computer", "Restart it, close unused programs, free up disk space, and install updates."),
    ("organise my closet", "Take everything out, keep what you wore this year, group the rest by type, and put favourites at eye level."),
    ("prepare for a job interview", "Research the company, practise describing your past work out loud, and prepare two questions to ask."),
    ("reduce stress", "Move your body every day, write down what worries you, and talk to someone you trust."),
    ("take better photos with my phone", "Clean the lens, use natural light, keep the horizon level, and tap to focus on your subject."),
    ("pick a good watermelon", "Choose one that feels heavy for its size and has a creamy yellow patch where it lay on the ground."),
    ("plan a trip on a budget", "Travel off season, book transport early, stay in guesthouses, and eat where locals eat."),
    ("keep my phone battery healthy", "Avoid heat, don't leave it at 0 or 100 percent for long, and use a good charger."),
    ("make a paper airplane", "Fold a sheet in half lengthwise, fold the top corners to the centre twice, then fold down the wings."),
    ("stop procrastinating", "Pick a first step that takes five minutes, start it right now, and reward yourself when it's done."),
    ("care for a new puppy", "Give it a quiet bed, feed it at regular times, take it outside often, and reward good behaviour at once."),
    ("improve my handwriting", "Write slowly, hold the pen loosely, practise one letter shape at a time, and copy a short text daily."),
    ("back up my files", "Keep one copy on an external drive and one in cloud storage, and make backups run automatically."),
    ("make a good cup of coffee", "Use freshly ground beans, about 15 grams per 250 ml of water just off the boil, and brew four minutes."),
    ("learn to cook", "Pick five simple dishes you like, cook each several times, and taste as you go."),
    ("be a better listener", "Put your phone away, let the other person finish, and ask a follow-up question before giving your view."),
)  # fmt: skip

WHY: tuple[tuple[str, str], ...] = (
    ("Why do we have seasons?", "Earth's axis is tilted, so each half of the planet gets more direct sunlight for part of the year."),
    ("Why does ice float?", "Water expands when it freezes, so ice is less dense than liquid water."),
    ("Why do cats purr?", "Cats purr when they are content, and sometimes to calm themselves when stressed or hurt."),
    ("Why is exercise good for you?", "It strengthens the heart and muscles, lifts your mood and lowers the risk of many diseases."),
    ("Why do onions make you cry?", "Cutting an onion releases a gas that irritates the eyes, and tears wash it away."),
    ("Why does bread go stale?", "Its starch slowly recrystallises and it loses moisture, so it turns hard and dry."),
    ("Why do birds migrate?", "To follow food and warmer weather, and to find safe places to raise their young."),
    ("Why do we see lightning before we hear thunder?", "Light travels much faster than sound, so the flash reaches you first."),
    ("Why do boats float?", "A boat pushes aside its own weight in water, and the water pushes back up with that force."),
    ("Why do we yawn?", "Nobody knows for sure; one idea is that yawning helps cool the brain and keep us alert."),
    ("Why does the Moon change shape?", "It doesn't; as it orbits Earth we see different amounts of its sunlit side."),
    ("Why do metal spoons get hot in soup?", "Metal conducts heat well, so the heat travels quickly up the handle."),
    ("Why is recycling important?", "It saves raw materials and energy and keeps waste out of landfills."),
    ("Why do apples turn brown after you cut them?", "Oxygen in the air reacts with substances in the flesh and turns it brown."),
    ("Why should I drink water every day?", "Your body keeps losing water and needs it to control temperature, digest food and think clearly."),
    ("Why do we get goosebumps?", "Tiny muscles at the base of the hairs tighten when we are cold or scared."),
    ("Why do stars twinkle?", "Their light passes through moving layers of air that bend it slightly this way and that."),
    ("Why do we brush our teeth?", "To remove food and bacteria that cause cavities and gum disease."),
    ("Why do some people need glasses?", "Their eyes focus light slightly in front of or behind the retina, and lenses correct that."),
    ("Why is reading good for you?", "It builds vocabulary, trains focus and lets you learn from other people's lives."),
    ("Why can airplanes fly?", "Their wings are shaped so the air pushes up on them harder than down, which creates lift."),
    ("Why do we sneeze?", "Sneezing is the body's way of blowing dust and germs out of the nose."),
)  # fmt: skip

ADVICE: tuple[tuple[str, str], ...] = (
    ("What do you think is a good way to start the day?", "A glass of water, some daylight and a simple breakfast are a good start for most people."),
    ("Do you think it's better to study in the morning or at night?", "Study when you feel most alert; reviewing again after a night's rest helps memory."),
    ("Which do you think is healthier, walking or running?", "Both are good: running burns more energy, while walking is gentler on the joints."),
    ("What would you cook for a quick weeknight dinner?", "A vegetable stir-fry with rice or noodles takes about 20 minutes and uses what's in the fridge."),
    ("Can you give me an idea for a weekend project?", "Build a small bookshelf, plant a herb box, or cook a dish from a country you've never visited."),
    ("Could you recommend a good habit to start this month?", "A 20-minute walk every day: simple, free, and good for body and mind."),
    ("What do you think makes a good team?", "Clear goals, trust, and people who feel safe to ask questions and admit mistakes."),
    ("City or countryside: can you give one reason for each?", "A city offers jobs and culture; the countryside offers space, quiet and fresh air."),
    ("How would you explain the internet to a child?", "It's like roads between computers, and messages travel along them to reach each other."),
    ("What would you bring to a picnic?", "Sandwiches, fruit, water, a blanket, and a bag for the rubbish."),
    ("Can you help me choose between a cat and a dog?", "A cat suits a busy life and a small home; a dog needs daily walks but loves company."),
    ("Can you suggest a gift for a friend who loves cooking?", "A good chef's knife, a cookbook from a cuisine they like, or a set of quality spices."),
    ("What do you recommend for a first trip abroad?", "Choose a place with easy transport, keep copies of your documents, and leave free time."),
    ("Do you have a tip for remembering new words?", "Use each new word in a sentence of your own, then review it after a day and after a week."),
    ("What's your advice for staying calm before a test?", "Breathe slowly, arrive a little early, and start with a question you know you can answer."),
    ("Could you help me think of a fun activity for kids?", "A treasure hunt in the park, a simple baking session, or a cardboard fort."),
    ("How would you describe a good friend?", "Someone who listens, tells you the truth kindly, and shows up when it matters."),
    ("What should I do on a lazy Sunday afternoon?", "Take a slow walk, call someone you miss, or cook something that takes its time."),
    ("Can you give me a tip for keeping my desk tidy?", "Clear it completely at the end of each day and keep only what you use daily within reach."),
    ("What do you suggest for a cheap and healthy lunch?", "Lentil soup, a bean salad, or rice with eggs and vegetables are cheap, filling and healthy."),
)  # fmt: skip

POEM_Q = (
    "Write a short poem about {t}.",
    "Can you write a little poem about {t}?",
    "Write four lines about {t}.",
    "Could you write me a poem about {t}?",
)
LINE_Q = (
    "Describe {t} in one sentence.",
    "Write one sentence about {t}.",
    "Give me a vivid sentence about {t}.",
    "Can you describe {t} in a single sentence?",
)
# (topic, four-line poem, one-sentence description)
CREATIVE: tuple[tuple[str, str, str], ...] = (
    ("snow", "White flakes drift down slow,\nstreetlights wear tall white hats,\nfootprints fill by dawn,\nand the whole town holds its breath.", "Fresh snow covered the quiet street like a clean sheet, and every sound seemed softer."),
    ("the moon", "A silver coin above the roofs,\nit follows me from street to street;\nit never speaks, it never sleeps,\nit lights the road beneath my feet.", "The full moon hung low over the rooftops, bright enough to throw shadows on the pavement."),
    ("a cat", "She naps in a square of sun,\none ear awake, the other gone;\nthe house moves softly round her chair\nas if the world were hers alone.", "The cat stretched across the warm windowsill, blinking as if the afternoon belonged to her."),
    ("coffee", "Dark and warm inside the cup,\nthe morning slowly wakes me up;\none sip, then two, the day begins,\nand all the quiet hours spin.", "The smell of fresh coffee drifted through the kitchen and pulled everyone out of bed."),
    ("spring", "Green tips push through last year's leaves,\nbirds argue in the apple trees,\nthe air smells new, the days grow long,\nand every hedge is full of song.", "In spring the park filled with blossom, birdsong and children who refused to wear their coats."),
    ("a train journey", "Fields and fences rushing past,\ntowns that come and go so fast;\na book, a window, tea in hand,\nthe rails keep singing through the land.", "The train rocked gently through green fields while passengers dozed, read and watched villages slide by."),
    ("the city at night", "Windows glow in stacked-up rows,\na late tram hums, a cold wind blows;\nthe bakers knead while others sleep,\nthe city has its hours to keep.", "At night the city glittered, its towers full of lit windows and its streets humming with the last buses."),
    ("a garden", "Seeds in rows and soil turned deep,\npromises the summer keeps;\na little water, sun and time,\nand green comes climbing up the line.", "The small garden was crowded with tomatoes, herbs and sunflowers leaning over the fence."),
    ("friendship", "A friend is a lamp in a long dark hall,\na voice that answers when you call;\nnot always near, but always true,\na steady light that waits for you.", "Real friendship is being able to sit in silence with someone and still feel understood."),
    ("the mountains", "Grey peaks wear their caps of snow,\nthe valleys sleep in mist below;\nthe path is steep, the air is thin,\nand every step lets silence in.", "The mountains rose above the valley, their snowy tops glowing pink in the evening light."),
    ("a library", "Rows of spines in patient lines,\na thousand voices, paper signs;\nsit down and open any door\nto find a world not seen before.", "The old library was so quiet you could hear pages turning three tables away."),
    ("the morning", "The kettle clicks, the curtains part,\nthe light comes in to make a start;\na bird, a bus, a distant bell,\nthe day begins, and all is well.", "The morning was cool and bright, with dew on the grass and the first buses rumbling past."),
)  # fmt: skip

TRANSLATE_Q = (
    "How do you say '{w}' in {lang}?",
    "Translate '{w}' into {lang}.",
    "What is '{w}' in {lang}?",
    "What's the {lang} word for '{w}'?",
    "Can you translate '{w}' to {lang}?",
)
TRANSLATE_A = ("'{w}' in {lang} is '{t}'.", "{t}", "In {lang} it's '{t}'.")
LANGS = ("French", "Spanish", "German", "Chinese")
# English word -> (French, Spanish, German, Chinese)
DICTIONARY: dict[str, tuple[str, str, str, str]] = {
    "hello": ("bonjour", "hola", "hallo", "你好"),
    "goodbye": ("au revoir", "adiós", "auf Wiedersehen", "再见"),
    "good morning": ("bonjour", "buenos días", "guten Morgen", "早上好"),
    "please": ("s'il vous plaît", "por favor", "bitte", "请"),
    "yes": ("oui", "sí", "ja", "是的"),
    "no": ("non", "no", "nein", "不是"),
    "water": ("eau", "agua", "Wasser", "水"),
    "bread": ("pain", "pan", "Brot", "面包"),
    "friend": ("ami", "amigo", "Freund", "朋友"),
    "cat": ("chat", "gato", "Katze", "猫"),
    "dog": ("chien", "perro", "Hund", "狗"),
    "book": ("livre", "libro", "Buch", "书"),
    "house": ("maison", "casa", "Haus", "房子"),
    "apple": ("pomme", "manzana", "Apfel", "苹果"),
    "sun": ("soleil", "sol", "Sonne", "太阳"),
    "school": ("école", "escuela", "Schule", "学校"),
    "cheese": ("fromage", "queso", "Käse", "奶酪"),
    "moon": ("lune", "luna", "Mond", "月亮"),
}

LIST_Q = (
    "Name {k} {c}.",
    "Can you list {k} {c}?",
    "Give me {k} examples of {c}.",
    "Could you name {k} {c}?",
    "List {k} {c}, please.",
    "What are {k} {c}?",
)
CATEGORIES: dict[str, tuple[str, ...]] = {
    "fruits": ("apple", "banana", "mango", "pear", "grape", "cherry", "peach"),
    "vegetables": ("carrot", "potato", "onion", "broccoli", "spinach", "cabbage"),
    "colors": ("red", "blue", "green", "yellow", "purple", "orange"),
    "ocean animals": ("dolphin", "shark", "octopus", "whale", "jellyfish", "sea turtle"),
    "musical instruments": ("piano", "violin", "guitar", "drums", "flute", "trumpet"),
    "sports": ("football", "tennis", "basketball", "swimming", "cycling", "badminton"),
    "planets": ("Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"),
    "countries in Europe": ("France", "Germany", "Spain", "Italy", "Poland", "Norway"),
    "programming languages": ("Python", "Java", "C", "JavaScript", "Rust", "Go"),
    "birds": ("sparrow", "eagle", "owl", "parrot", "penguin", "robin"),
    "kitchen tools": ("kettle", "frying pan", "knife", "spoon", "whisk", "cutting board"),
    "jobs": ("teacher", "doctor", "farmer", "engineer", "nurse", "baker"),
}

SYNONYM_Q = (
    "What's a synonym for '{w}'?",
    "Give me another word for '{w}'.",
    "What word means the same as '{w}'?",
)
SYNONYM_A = ("'{s}' means about the same as '{w}'.", "{S}.", "You could say '{s}'.")
SYNONYMS = {
    "happy": "glad", "fast": "quick", "small": "tiny", "smart": "clever", "begin": "start",
    "angry": "cross", "easy": "simple", "pretty": "beautiful", "tired": "weary", "quiet": "silent",
    "scared": "afraid", "rich": "wealthy", "funny": "amusing", "brave": "courageous",
}  # fmt: skip
ANTONYM_Q = (
    "What is the opposite of '{w}'?",
    "Give me an antonym of '{w}'.",
    "What's the antonym for '{w}'?",
)
ANTONYM_A = ("The opposite of '{w}' is '{s}'.", "{S}.", "'{s}'.")
ANTONYMS = {
    "up": "down", "open": "closed", "happy": "sad", "full": "empty", "cheap": "expensive",
    "young": "old", "strong": "weak", "loud": "quiet", "wet": "dry", "heavy": "light",
    "ancient": "modern", "win": "lose", "arrive": "leave", "remember": "forget", "inside": "outside",
}  # fmt: skip
RHYME_Q = (
    "Give me a word that rhymes with '{w}'.",
    "What rhymes with '{w}'?",
    "Can you think of a rhyme for '{w}'?",
)
RHYME_A = ("'{s}' rhymes with '{w}'.", "{S}.", "How about '{s}'?")
RHYMES = {
    "dog": "log", "sun": "fun", "tree": "bee", "cake": "lake", "night": "light", "house": "mouse",
    "ring": "sing", "boat": "coat", "star": "car", "bed": "red", "moon": "spoon", "book": "cook",
}  # fmt: skip

NAMING_Q = (
    "Suggest a name for my new {t}.",
    "Can you think of a name for my {t}?",
    "What should I name my {t}?",
    "Give me a good name for a {t}.",
)
NAMING_A = ("How about '{n}'?", "'{n}' would suit it.", "You could call it {n}.")
NAMES: dict[str, tuple[str, ...]] = {
    "puppy": ("Biscuit", "Pepper", "Milo"),
    "kitten": ("Mochi", "Whiskers", "Olive"),
    "goldfish": ("Bubbles", "Goldie", "Finn"),
    "hamster": ("Peanut", "Nibbles"),
    "book club": ("The Page Turners", "Chapter and Verse"),
    "football team": ("The Thunderbolts", "Riverside Rovers"),
    "boat": ("Sea Breeze", "Little Wave"),
    "cooking blog": ("Kitchen Notes", "Salt and Thyme"),
    "robot toy": ("Bolt", "Sprocket"),
}

STORY_Q = (
    "Summarize {t} in one sentence.",
    "What is {t} about?",
    "Can you tell me the story of {t} briefly?",
    "Give me a one-sentence summary of {t}.",
)
STORIES: tuple[tuple[str, str], ...] = (
    ("The Tortoise and the Hare", "A boastful hare naps during a race, and the slow but steady tortoise wins."),
    ("Little Red Riding Hood", "A girl visiting her grandmother is tricked by a wolf, who is driven off in the end."),
    ("The Three Little Pigs", "Three pigs build houses of straw, sticks and bricks, and only the brick house resists the wolf."),
    ("The Boy Who Cried Wolf", "A shepherd boy lies about a wolf so often that nobody believes him when a real wolf comes."),
    ("Goldilocks and the Three Bears", "A girl tries the bears' porridge, chairs and beds, and runs off when they come home."),
    ("The Ugly Duckling", "A bird mocked as an ugly duckling grows up to find it is a beautiful swan."),
    ("Romeo and Juliet", "Two young lovers from feuding families marry in secret, and misunderstandings end in their deaths."),
    ("The Emperor's New Clothes", "Swindlers sell an emperor invisible clothes, and only a child says he is wearing nothing."),
)  # fmt: skip

CODE_Q = (
    "Write a Python function that {t}.",
    "Can you write Python code that {t}?",
    "Show me a Python function that {t}.",
    "How do I write a function in Python that {t}?",
)
CODE_A = ("{code}", "Here is one way:\n\n{code}", "Sure:\n\n{code}")
CODE_TASKS = (
    "reverses a string",
    "checks if a number is even",
    "returns the largest number in a list",
    "counts the vowels in a string",
    "squares a number",
    "checks if a word is a palindrome",
    "converts Celsius to Fahrenheit",
    "returns the average of a list",
)

# Shared by both languages, index-aligned with CODE_TASKS.
CODE: tuple[str, ...] = (
    "def reverse(s):\n    return s[::-1]",
    "def is_even(n):\n    return n % 2 == 0",
    "def largest(numbers):\n    return max(numbers)",
    'def count_vowels(text):\n    return sum(ch in "aeiou" for ch in text.lower())',
    "def square(x):\n    return x * x",
    "def is_palindrome(word):\n    return word == word[::-1]",
    "def celsius_to_fahrenheit(c):\n    return c * 9 / 5 + 32",
    "def average(numbers):\n    return sum(numbers) / len(numbers)",
)

MESSAGE_Q = ("Write {t}.", "Can you write {t}?", "Help me write {t}.", "Draft {t} for me.")
MESSAGES: tuple[tuple[str, str], ...] = (
    ("a thank-you note to my teacher", "Dear Ms. Lee, thank you for your patience and encouragement this year. Your lessons made a real difference."),
    ("a get-well message for a friend", "Sorry to hear you're unwell. Rest up, drink plenty of tea, and get well soon!"),
    ("a message congratulating a friend on a new job", "Congratulations on the new job! They're lucky to have you. Let's celebrate soon."),
    ("a short invitation to dinner on Saturday", "Would you like to come for dinner on Saturday at 7? Nothing fancy, just good food and good company."),
    ("an apology for being late to a meeting", "Apologies for arriving late to today's meeting. It won't happen again, and I'll catch up on what I missed."),
    ("a good-luck message before an exam", "Good luck tomorrow! You've prepared well, so stay calm, read each question carefully and trust yourself."),
    ("a note to my neighbours about a party on Friday", "Hi! We're having a few friends over on Friday evening and it may get a bit loud. Sorry in advance!"),
    ("a reminder to my team about Friday's deadline", "Quick reminder: the report is due this Friday at 5 p.m. Please send your sections by Thursday evening."),
)  # fmt: skip
