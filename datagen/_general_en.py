"""English text for the built-in general instruction set (written for tunesmith).

``TEMPLATES[task]`` holds question templates (``q``) and answer templates (``a``, or ``yes``/``no``
for yes-no tasks). Many questions say "you"/"your" on purpose: the demo model must learn that "you"
alone does not mean "tell me who you are". Slots are filled by ``make_general.py``.
"""

from __future__ import annotations

T = dict[str, tuple[str, ...]]

TEMPLATES: dict[str, T] = {
    "add": {
        "q": (
            "What is {a} + {b}?",
            "What's {a} plus {b}?",
            "Can you add {a} and {b}?",
            "Could you tell me the sum of {a} and {b}?",
            "Add {a} and {b}.",
            "Calculate {a} + {b}.",
            "{a} + {b} = ?",
            "{a}+{b}",
            "Do you know what {a} plus {b} equals?",
            "Please compute {a} + {b}.",
            "How much is {a} plus {b}?",
            "I need your help with a sum: {a} + {b}.",
            "Can you work out {a} + {b} for me?",
            "What do you get when you add {a} to {b}?",
            "What's the total of {a} and {b}?",
        ),
        "a": ("{a} + {b} = {c}.", "The answer is {c}.", "{c}", "It's {c}.", "{a} plus {b} is {c}."),
    },
    "sub": {
        "q": (
            "What is {a} - {b}?",
            "What's {a} minus {b}?",
            "Can you subtract {b} from {a}?",
            "Subtract {b} from {a}.",
            "{a} - {b} = ?",
            "Calculate {a} - {b}.",
            "How much is {a} minus {b}?",
            "Could you tell me what {a} minus {b} is?",
            "What do you get if you take {b} away from {a}?",
            "Can you work out {a} - {b}?",
            "Please compute {a} minus {b}.",
            "What's your result for {a} - {b}?",
        ),
        "a": (
            "{a} - {b} = {c}.",
            "The answer is {c}.",
            "{c}",
            "It's {c}.",
            "{a} minus {b} is {c}.",
        ),
    },
    "mul": {
        "q": (
            "What is {a} × {b}?",
            "What is {a} * {b}?",
            "What's {a} times {b}?",
            "Multiply {a} by {b}.",
            "Can you multiply {a} and {b}?",
            "{a} x {b} = ?",
            "How much is {a} times {b}?",
            "Could you tell me the product of {a} and {b}?",
            "Do you know what {a} times {b} is?",
            "Calculate {a} * {b}.",
            "What do you get when you multiply {a} by {b}?",
            "Can you help me with {a} times {b}?",
        ),
        "a": (
            "{a} × {b} = {c}.",
            "The answer is {c}.",
            "{c}",
            "It's {c}.",
            "{a} times {b} is {c}.",
        ),
    },
    "div": {
        "q": (
            "What is {a} ÷ {b}?",
            "What's {a} divided by {b}?",
            "Divide {a} by {b}.",
            "Can you divide {a} by {b}?",
            "How much is {a} / {b}?",
            "If you share {a} sweets equally among {b} kids, how many does each get?",
            "Could you work out {a} ÷ {b}?",
        ),
        "a": ("{a} ÷ {b} = {c}.", "The answer is {c}.", "{c}", "It's {c}."),
    },
    "add_story": {
        "q": (
            "I have {a} {item} and get {b} more. How many {item} do I have now?",
            "If you have {a} {item} and someone gives you {b} more, how many do you have?",
            "There are {a} {item} in one box and {b} in another. How many {item} are there in all?",
            "Tom has {a} {item} and Amy has {b}. How many {item} do they have together?",
        ),
        "a": ("{c} {item}.", "{a} + {b} = {c}, so {c} {item}.", "The total is {c} {item}."),
    },
    "sub_story": {
        "q": (
            "I had {a} {item} and gave away {b}. How many are left?",
            "If you have {a} {item} and lose {b}, how many do you have left?",
            "A shop had {a} {item} and sold {b}. How many {item} remain?",
        ),
        "a": ("{c} {item}.", "{a} - {b} = {c}, so {c} {item} are left.", "{c} are left."),
    },
    "verify": {
        "q": (
            "Is {a} {op} {b} = {c} correct?",
            "Are you sure {a} {opw} {b} is {c}?",
            "Check my math: {a} {op} {b} = {c}. Is that right?",
            "I think {a} {opw} {b} is {c}. Am I right?",
            "Can you verify that {a} {op} {b} = {c}?",
            "Is it true that {a} {opw} {b} equals {c}?",
        ),
        "yes": ("Yes, that's right: {a} {op} {b} = {t}.", "Correct. {a} {op} {b} = {t}."),
        "no": ("No, {a} {op} {b} = {t}, not {c}.", "Not quite. {a} {op} {b} is {t}."),
    },
    "gt": {
        "q": (
            "Is {a} greater than {b}?",
            "Is {a} bigger than {b}?",
            "Is {a} more than {b}?",
            "Do you think {a} is larger than {b}?",
            "Is {a} larger than {b}, yes or no?",
        ),
        "yes": ("Yes, {a} is greater than {b}.", "Yes. {a} > {b}."),
        "no": ("No, {a} is less than {b}.", "No. {a} < {b}."),
    },
    "cmp_big": {
        "q": (
            "Which is larger, {a} or {b}?",
            "Which number is bigger: {a} or {b}?",
            "Can you tell me which is greater, {a} or {b}?",
            "{a} or {b}: which one is larger?",
            "Between {a} and {b}, which is bigger?",
        ),
        "a": ("{x} is larger.", "{x}", "{x} is the bigger one."),
    },
    "cmp_small": {
        "q": (
            "Which is smaller, {a} or {b}?",
            "Which number is less: {a} or {b}?",
            "Could you tell me which is smaller, {a} or {b}?",
            "Between {a} and {b}, which is smaller?",
        ),
        "a": ("{x} is smaller.", "{x}", "{x} is the smaller one."),
    },
    "parity": {
        "q": (
            "Is {n} even or odd?",
            "Is {n} odd or even?",
            "Can you tell me if {n} is even or odd?",
            "Even or odd: {n}?",
            "Do you know whether {n} is odd or even?",
        ),
        "a": ("{n} is {k}.", "It's {k}.", "{K}."),
    },
    "reverse": {
        "q": (
            "Reverse the word '{w}'.",
            "Can you reverse the word '{w}'?",
            "Spell '{w}' backwards.",
            "What is '{w}' spelled backwards?",
            "Could you write {w} in reverse?",
            'Write the word "{w}" backwards, please.',
            "How do you spell {w} backwards?",
            'Reverse the letters of "{w}".',
        ),
        "a": ("{r}", "'{w}' reversed is '{r}'.", 'Backwards, it\'s "{r}".'),
    },
    "upper": {
        "q": (
            "Convert '{w}' to uppercase.",
            "Write {w} in capital letters.",
            "Can you make '{w}' all caps?",
            'What is "{w}" in upper case?',
            "Could you capitalize every letter of '{w}'?",
        ),
        "a": ("{r}", "In uppercase: {r}", "'{w}' in capitals is '{r}'."),
    },
    "lower": {
        "q": (
            "Convert '{w}' to lowercase.",
            "Write {w} in small letters.",
            "Can you make '{w}' all lowercase?",
            'What is "{w}" in lower case?',
        ),
        "a": ("{r}", "In lowercase: {r}", "'{w}' in lowercase is '{r}'."),
    },
    "wlen": {
        "q": (
            "How many letters are in the word '{w}'?",
            "How long is the word '{w}'?",
            'Count the letters in "{w}".',
            "Can you tell me how many letters '{w}' has?",
            "How many characters does '{w}' have?",
            "Do you know how many letters are in {w}?",
        ),
        "a": ("{n}", "'{w}' has {n} letters.", "There are {n} letters."),
    },
    "count_letter": {
        "q": (
            "How many times does the letter '{ch}' appear in '{w}'?",
            "Count the letter {ch} in the word {w}.",
            'How many {ch}\'s are in "{w}"?',
            "Can you count how many '{ch}' there are in '{w}'?",
        ),
        "a": ("{n}", "The letter '{ch}' appears {n} times in '{w}'.", "{n} times."),
    },
    "first_letter": {
        "q": (
            "What is the first letter of '{w}'?",
            "What letter does '{w}' start with?",
            "Which letter does the word {w} begin with?",
            'Can you tell me the first letter of "{w}"?',
        ),
        "a": ("{ch}", "It starts with '{ch}'.", "The first letter is '{ch}'."),
    },
    "last_letter": {
        "q": (
            "What is the last letter of '{w}'?",
            "What letter does '{w}' end with?",
            "Which letter comes last in the word {w}?",
            'Could you tell me the final letter of "{w}"?',
        ),
        "a": ("{ch}", "It ends with '{ch}'.", "The last letter is '{ch}'."),
    },
    "next_letter": {
        "q": (
            "What letter comes after '{ch}' in the alphabet?",
            "Which letter follows {ch}?",
            "What's the next letter after '{ch}'?",
            "In the alphabet, what comes right after {ch}?",
        ),
        "a": ("{nx}", "'{nx}' comes next.", "The next letter is '{nx}'."),
    },
    "convert": {
        "q": (
            "How many {df} are in {x} {sf}?",
            "Convert {x} {ss} to {ds}.",
            "Can you convert {x} {sf} into {df}?",
            "What is {x} {sf} in {df}?",
            "{x} {ss} = ? {ds}",
            "Could you tell me how many {df} {x} {sf} is?",
            "Please change {x} {sf} to {df}.",
            "Do you know how many {df} there are in {x} {sf}?",
        ),
        "a": ("{x} {sf} = {y} {df}.", "{y} {df}.", "It's {y} {df}.", "{x} {ss} is {y} {ds}."),
    },
    "c2f": {
        "q": (
            "What is {x}°C in Fahrenheit?",
            "Convert {x} degrees Celsius to Fahrenheit.",
            "Can you convert {x}°C to °F?",
            "How much is {x} Celsius in Fahrenheit?",
            "If it's {x}°C outside, what is that in Fahrenheit?",
        ),
        "a": ("{x}°C = {y}°F.", "{y}°F.", "It's {y} degrees Fahrenheit."),
    },
    "f2c": {
        "q": (
            "What is {x}°F in Celsius?",
            "Convert {x} degrees Fahrenheit to Celsius.",
            "Could you change {x}°F into °C?",
        ),
        "a": ("{x}°F = {y}°C.", "{y}°C.", "That's {y} degrees Celsius."),
    },
    "sort_asc": {
        "q": (
            "Sort these numbers from smallest to largest: {l}",
            "Can you sort {l} in ascending order?",
            "Please put these numbers in increasing order: {l}",
            "Could you arrange {l} from low to high?",
            "Sort the list {l}.",
            "Order these from least to greatest: {l}",
            "Would you sort this list for me? {l}",
        ),
        "a": ("{r}", "Sorted: {r}", "From smallest to largest: {r}"),
    },
    "sort_desc": {
        "q": (
            "Sort these numbers from largest to smallest: {l}",
            "Can you sort {l} in descending order?",
            "Put these in decreasing order: {l}",
            "Arrange {l} from high to low.",
            "Order these from greatest to least: {l}",
        ),
        "a": ("{r}", "Sorted, largest first: {r}", "From largest to smallest: {r}"),
    },
    "max": {
        "q": (
            "What is the largest number in {l}?",
            "Which number is the biggest: {l}?",
            "Can you find the maximum of {l}?",
            "Find the max of {l}.",
            "What's the highest value in this list: {l}?",
            "Could you pick out the largest number from {l}?",
        ),
        "a": ("{r}", "The largest is {r}.", "The maximum is {r}."),
    },
    "min": {
        "q": (
            "What is the smallest number in {l}?",
            "Which number is the lowest: {l}?",
            "Can you find the minimum of {l}?",
            "Find the min of {l}.",
            "Could you pick out the smallest number from {l}?",
        ),
        "a": ("{r}", "The smallest is {r}.", "The minimum is {r}."),
    },
    "sum": {
        "q": (
            "What is the sum of {l}?",
            "Add up these numbers: {l}",
            "Can you total {l} for me?",
            "What do these add up to: {l}?",
            "Could you tell me the sum of the list {l}?",
        ),
        "a": ("{r}", "The sum is {r}.", "They add up to {r}."),
    },
    "count": {
        "q": (
            "How many numbers are in this list: {l}?",
            "Count the items in {l}.",
            "How many elements does {l} have?",
            "Can you tell me how many numbers there are in {l}?",
        ),
        "a": ("{r}", "There are {r} numbers.", "The list has {r} items."),
    },
    "dedupe": {
        "q": (
            "Remove the duplicates from {l}.",
            "Can you drop the repeated numbers from {l}?",
            "Deduplicate this list: {l}",
            "Keep each number only once: {l}",
            "Could you remove repeats from {l}, keeping the order?",
        ),
        "a": ("{r}", "Without duplicates: {r}", "Here it is without repeats: {r}"),
    },
    "day_after": {
        "q": (
            "What day comes after {d}?",
            "What's the day after {d}?",
            "If today is {d}, what day is tomorrow?",
            "Which day of the week follows {d}?",
            "Do you know what day comes after {d}?",
        ),
        "a": ("{r}.", "It's {r}.", "The day after {d} is {r}."),
    },
    "day_before": {
        "q": (
            "What day comes before {d}?",
            "If today is {d}, what day was yesterday?",
            "Which day is just before {d}?",
        ),
        "a": ("{r}.", "It's {r}.", "The day before {d} is {r}."),
    },
    "days_later": {
        "q": (
            "What day is {k} days after {d}?",
            "If today is {d}, what day will it be in {k} days?",
            "Can you tell me what day it is {k} days after {d}?",
        ),
        "a": ("{r}.", "It will be {r}.", "{k} days after {d} is {r}."),
    },
    "month_after": {
        "q": (
            "What month comes after {m}?",
            "Which month follows {m}?",
            "What's the month after {m}?",
            "Could you tell me which month comes after {m}?",
        ),
        "a": ("{r}.", "It's {r}.", "After {m} comes {r}."),
    },
    "month_before": {
        "q": ("What month comes before {m}?", "Which month is right before {m}?"),
        "a": ("{r}.", "It's {r}.", "The month before {m} is {r}."),
    },
    "nth_month": {
        "q": (
            "What is the {ord} month of the year?",
            "Which month is month number {k}?",
            "Can you name the {ord} month of the year?",
        ),
        "a": ("{r}.", "The {ord} month is {r}.", "It's {r}."),
    },
}

WORDS: tuple[str, ...] = (
    "apple", "river", "garden", "pencil", "lamp", "table", "orange", "music", "summer", "winter",
    "yellow", "purple", "rabbit", "turtle", "castle", "forest", "bottle", "butter", "coffee",
    "pepper", "letter", "little", "kitten", "puppy", "mirror", "carrot", "cookie", "school",
    "teacher", "doctor", "pillow", "blanket", "candle", "silver", "dragon", "monkey", "tiger",
    "zebra", "lemon", "melon", "cherry", "grape", "bread", "cheese", "spoon", "plate", "cloud",
    "storm", "ocean", "island", "bridge", "street", "market", "number", "paper", "basket",
    "jacket", "ticket", "wizard", "guitar", "piano", "violin", "camera", "travel", "happy",
    "quiet", "simple", "middle", "bubble", "balloon", "coconut", "tomato", "potato", "noodle",
    "pizza", "sugar", "honey", "hammer", "ladder", "needle", "kettle", "hello", "committee",
    "address", "success", "tennis", "puzzle", "cotton", "button", "parallel", "mammal", "level",
    "giraffe", "pepperoni", "bookkeeper", "assessment", "grammar", "hippo", "stress", "mission",
)  # fmt: skip
# (English plural, Chinese noun, Chinese measure word) for the word problems.
ITEMS: tuple[tuple[str, str, str], ...] = (
    ("apples", "苹果", "个"),
    ("cookies", "饼干", "块"),
    ("books", "书", "本"),
    ("pencils", "铅笔", "支"),
    ("eggs", "鸡蛋", "个"),
    ("stamps", "邮票", "张"),
    ("marbles", "弹珠", "颗"),
    ("oranges", "橘子", "个"),
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
ORDINALS = (
    "first", "second", "third", "fourth", "fifth", "sixth",
    "seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth",
)  # fmt: skip
# unit id -> (full plural name, short symbol)
UNITS: dict[str, tuple[str, str]] = {
    "km": ("kilometers", "km"),
    "m": ("meters", "m"),
    "cm": ("centimeters", "cm"),
    "kg": ("kilograms", "kg"),
    "g": ("grams", "g"),
    "L": ("liters", "L"),
    "mL": ("milliliters", "mL"),
    "day": ("days", "days"),
    "week": ("weeks", "weeks"),
    "h": ("hours", "h"),
    "min": ("minutes", "min"),
    "s": ("seconds", "s"),
}
