"""Benign requests with well-written answers, for the proxy judge's training set (data v3).

Every "achieved" reply the heads saw before came from SmolLM2-135M, while the refusal, off-topic and
vague templates were fluent, assistant-style text. The heads learned the shortcut "fluent and
well-formed means refusal or off topic": a good direct answer that does not repeat the request's
words (a balcony-tomato answer that never says "tomato") scored p(refusal) 0.99. These pairs
break the shortcut by contrast: each answer is "achieved" under its own requests and a non-sequitur
under every other request, so only the relation between request and reply separates the labels.

All content is benign and written for this project. Styles vary on purpose (lists, prose, code,
verse, letters, short facts, answers that never restate the request). Each entry: requests (two
phrasings) and the answer.
"""

from __future__ import annotations

ANSWERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("How do I descale a kettle?", "What's the easiest way to get limescale out of my kettle?"),
     "Fill it halfway with equal parts white vinegar and water, bring it to the boil, and leave it for an hour. "
     "Pour it out, scrub any remaining flakes with a soft brush, then boil fresh water twice and discard it so "
     "the next cup of tea doesn't taste of vinegar."),
    (("What's a good way to learn Spanish quickly?", "How do I pick up Spanish fast?"),
     "Immerse yourself: switch your phone's language, watch shows with Spanish subtitles, and speak with a "
     "native speaker for half an hour a day. Drill the thousand most common words with spaced-repetition "
     "flashcards and keep a five-sentence daily journal."),
    (("Write a haiku about autumn.", "Give me a haiku on the theme of autumn."),
     "Crimson leaves drifting\nwhispers of the cooling wind\nthe year exhales slow"),
    (("Write a Python function that checks whether a string is a palindrome.",
      "Show me Python code to test if a word reads the same backwards."),
     "```python\ndef is_palindrome(text: str) -> bool:\n    cleaned = [c.lower() for c in text if c.isalnum()]\n"
     "    return cleaned == cleaned[::-1]\n```\nIt ignores case, spaces and punctuation, so "
     "`is_palindrome('A man, a plan, a canal: Panama')` returns `True`."),
    (("How do I make a strong password I can remember?", "What's the best way to create a secure password?"),
     "Use a passphrase of four or five unrelated words, such as 'orbit-candle-mustard-glacier', and add a "
     "number if a site demands one. Length beats complexity. Keep a different one for every account in a "
     "password manager and switch on two-factor authentication for email and banking."),
    (("Explain how vaccines train the immune system.", "How does a vaccine work in the body?"),
     "A vaccine shows the immune system a harmless piece or weakened form of a pathogen. B cells make "
     "antibodies that fit it and T cells learn to recognise it; some of both become long-lived memory cells. "
     "When the real pathogen arrives, those memory cells respond within days instead of weeks."),
    (("Write a short email asking my landlord to fix a leaking tap.",
      "Draft a polite message to my landlord about a dripping kitchen tap."),
     "Subject: Leaking kitchen tap\n\nHi Sam,\n\nThe kitchen tap in flat 4 has been dripping constantly since "
     "Monday, even when fully closed. Could you arrange for someone to repair it this week? I'm home after 5 pm "
     "on weekdays, or a key can be left with the concierge.\n\nThanks,\nAlex"),
    (("What caused the fall of the Western Roman Empire?", "Why did the Western Roman Empire collapse?"),
     "Historians point to several causes acting together: decades of civil wars and short-lived emperors, a "
     "strained tax base, pressure from migrating groups such as the Goths and Vandals, the loss of rich "
     "provinces in North Africa, and a split of resources with the eastern half. By 476 the last western "
     "emperor was deposed by Odoacer."),
    (("How do I remove a red wine stain from a carpet?", "Red wine got on my rug, how do I clean it?"),
     "Blot (don't rub) as much as you can with a dry cloth. Pour a little cold water on the spot and blot again. "
     "Then mix one tablespoon of dish soap and one of white vinegar in two cups of warm water, sponge it on, "
     "blot, and rinse with cold water. Baking soda left overnight lifts what remains."),
    (("Give me a persuasive paragraph on why cities should build more bike lanes.",
      "Argue in favour of adding protected bike lanes to our city."),
     "Protected bike lanes are among the cheapest ways to move more people through the same streets. A lane "
     "that carries cyclists safely takes cars off the road, cuts emissions and noise, and makes local shops "
     "easier to reach. Cities that built connected networks, from Copenhagen to Seville, saw cycling double "
     "within a few years, with fewer serious injuries for everyone."),
    (("How does compound interest work?", "Can you explain compound interest with an example?"),
     "Interest is added to the balance, and the next period's interest is calculated on that larger balance. "
     "Put 1,000 at 5 % a year: after one year you have 1,050, after two 1,102.50, and after ten about 1,629, "
     "against 1,500 with simple interest."),
    (("Tell me a bedtime story about a dragon who is afraid of the dark.",
      "Write a short children's story about a dragon scared of the dark."),
     "Once there was a small green dragon named Pip who could breathe fire but trembled when the sun went down. "
     "One night a firefly landed on his nose and said, 'The dark is just the sky resting.' Pip breathed a tiny "
     "flame, lit up the cave, and saw all his friends asleep around him. From then on he kept one warm glow "
     "burning, and the dark felt like a blanket."),
    (("What should I pack for a three-day hiking trip?", "Packing list for a weekend hike with two nights "
      "camping?"),
     "- Tent, sleeping bag and mat\n- Stove, fuel, lighter and a pot\n- Food for three days plus one spare meal\n"
     "- Water filter and two litres of bottles\n- Rain jacket, warm layer, spare socks\n- Map, compass, "
     "headlamp and first-aid kit\n- Sun cream, hat and a trowel"),
    (("How do I politely decline a wedding invitation?", "What's a kind way to say I can't attend a friend's "
      "wedding?"),
     "Reply early and warmly: thank them for including you, say you are unable to attend without a long "
     "explanation, and wish them a wonderful day. Sending a card or a gift from their registry shows you care "
     "even though you can't be there."),
    (("Explain the difference between weather and climate.", "Is weather the same thing as climate?"),
     "Weather is what the atmosphere does on a given day: today's rain, tomorrow's wind. Climate is the "
     "long-run pattern of that weather over thirty years or more, such as a region's typical summer "
     "temperature or yearly rainfall."),
    (("Write a SQL query that returns the ten customers who spent the most.",
      "SQL to get the top 10 customers by total spend?"),
     "```sql\nSELECT customer_id, SUM(amount) AS total_spent\nFROM orders\nGROUP BY customer_id\n"
     "ORDER BY total_spent DESC\nLIMIT 10;\n```"),
    (("How can I fall asleep faster?", "I struggle to get to sleep at night; what helps?"),
     "Keep the same wake-up time every day, even at weekends. Stop caffeine after lunch, dim screens an hour "
     "before bed, and keep the bedroom cool and dark. If you're still awake after twenty minutes, get up and "
     "read something dull in low light until you feel drowsy."),
    (("What is photosynthesis?", "Describe how plants make their food."),
     "Plants capture sunlight with chlorophyll and use its energy to turn carbon dioxide and water into "
     "glucose, releasing oxygen as a by-product. It happens mostly in the leaves' chloroplasts, in a "
     "light-dependent stage and a sugar-building stage called the Calvin cycle."),
    (("Summarise the plot of Romeo and Juliet in three sentences.", "Give me a brief summary of Romeo and "
      "Juliet."),
     "Two teenagers from feuding families in Verona fall in love and marry in secret. A street fight leaves "
     "Juliet's cousin dead and Romeo banished, and a plan to fake Juliet's death goes wrong. Believing she is "
     "dead, Romeo takes poison, and Juliet, waking beside him, ends her own life, which finally reconciles the "
     "families."),
    (("How do I change a flat tyre on my car?", "Steps to swap a flat car tyre for the spare?"),
     "Park on flat ground, put the hazard lights and handbrake on. Loosen the wheel nuts half a turn while the "
     "wheel is on the ground, jack the car up at the marked point, remove the nuts and the wheel, fit the "
     "spare, hand-tighten the nuts, lower the car and tighten them fully in a star pattern."),
    (("Write a limerick about a cat who loves cheese.", "Funny limerick about a cheese-loving cat, please."),
     "There once was a cat from Dundee\nwho loved cheddar more than the sea;\nshe would purr and would plead\n"
     "for a nibble, indeed,\nthen nap on the fridge, wedge and all, happily."),
    (("How do I recognise a phishing email?", "What are the signs that an email is a scam?"),
     "Watch for urgency ('your account closes today'), a sender address that doesn't match the company, "
     "links whose real destination differs from the text when you hover, requests for passwords or payment "
     "details, and attachments you didn't expect. When in doubt, open the company's site yourself instead of "
     "clicking."),
    (("What's the boiling point of water at the top of Mount Everest?", "At what temperature does water boil "
      "on Everest's summit?"),
     "About 70 C. Air pressure at 8,849 m is roughly a third of sea level, so water boils some 30 degrees "
     "lower, which is why climbers struggle to cook pasta up there."),
    (("Give me three ideas for a rainy-day activity with kids.", "What can I do indoors with children when it "
      "rains?"),
     "1. Build a blanket fort and read stories inside with a torch.\n2. Bake and decorate biscuits together.\n"
     "3. Set up a treasure hunt with rhyming clues hidden around the house."),
    (("How should I prepare for a job interview?", "Tips to get ready for an interview next week?"),
     "Research the company's products and recent news, reread the job description and match three of your "
     "experiences to its main requirements, and practise answering out loud with the STAR method (situation, "
     "task, action, result). Prepare two questions to ask them and plan your route to arrive ten minutes "
     "early."),
    (("Why is the sky blue?", "What makes the daytime sky look blue?"),
     "Sunlight scatters off the gas molecules in the air, and short blue wavelengths scatter far more than "
     "long red ones (Rayleigh scattering). Blue light reaches your eyes from every direction of the sky, "
     "so it looks blue; at sunset the light crosses more air and the reds win."),
    (("Translate 'Where is the train station?' into French and German.", "How do you ask where the train "
      "station is in French and in German?"),
     "French: « Où est la gare ? »\nGerman: „Wo ist der Bahnhof?“"),
    (("Write a toast for my sister's wedding.", "Help me with a short speech for my sister's wedding."),
     "I've known the bride her whole life, which means I've seen her argue with referees, teachers and once a "
     "very patient parking attendant. Then she met Tom, and for the first time she let someone else win an "
     "argument. Tom, thank you for making her laugh every day. Please raise your glasses: to Emma and Tom."),
    (("How do solar panels generate electricity?", "Explain how a photovoltaic panel makes power."),
     "Each cell is a sandwich of two differently treated silicon layers. When light hits it, photons knock "
     "electrons loose, and the electric field between the layers pushes them one way, creating a direct "
     "current. An inverter turns that into the alternating current used in homes."),
    (("What are the health benefits of regular walking?", "Is walking every day actually good for you?"),
     "Yes. Thirty minutes of brisk walking most days lowers blood pressure and the risk of heart disease and "
     "type 2 diabetes, strengthens bones, helps with weight control, and improves mood and sleep. It's also "
     "easy on the joints compared with running."),
    (("Make a simple weekly budget for a student with 200 a week.", "How should a student split 200 a week?"),
     "Rent and bills: 110\nGroceries: 45\nTransport: 15\nPhone: 5\nFun and eating out: 15\nSavings: 10\n\n"
     "Track spending for a month and move money between lines as needed, but keep the savings line."),
    (("How do I calm down before giving a presentation?", "I get nervous speaking in public; any advice?"),
     "Rehearse the first two minutes until they are automatic, since nerves peak at the start. Before you go "
     "on, breathe in for four counts and out for six a few times. Look at friendly faces, slow down, and "
     "remember the audience wants you to do well."),
    (("Describe the water cycle.", "How does water move between the sea, the air and the land?"),
     "The sun warms oceans and lakes, and water evaporates into the air. As the vapour rises it cools and "
     "condenses into clouds, falls back as rain or snow, and runs off in rivers or soaks into the ground "
     "before returning to the sea, where the cycle starts again."),
    (("Recommend some classic science fiction novels.", "What sci-fi books should everyone read?"),
     "Frank Herbert's Dune, Ursula K. Le Guin's The Left Hand of Darkness, Isaac Asimov's Foundation, Arthur "
     "C. Clarke's Childhood's End, Philip K. Dick's Do Androids Dream of Electric Sheep?, and Octavia Butler's "
     "Kindred."),
    (("How do I keep cut flowers fresh longer?", "My bouquet wilts quickly; how can I make it last?"),
     "Trim the stems at an angle under running water, strip leaves below the waterline, and use a clean vase "
     "with cool water and the sachet of flower food. Change the water every two days and keep the vase away "
     "from sunlight, radiators and ripening fruit."),
    (("Write a JavaScript snippet that adds two numbers from input fields.",
      "Show me JS that sums the values of two text inputs."),
     "```javascript\nconst a = Number(document.getElementById('a').value);\n"
     "const b = Number(document.getElementById('b').value);\n"
     "document.getElementById('result').textContent = a + b;\n```"),
    (("What's the difference between a virus and a bacterium?", "Are viruses and bacteria the same thing?"),
     "Bacteria are single-celled living organisms that reproduce on their own and can be treated with "
     "antibiotics. Viruses are far smaller packages of genetic material that can only multiply inside a "
     "host's cells, and antibiotics do nothing against them."),
    (("Give me a recipe for a quick vegetarian pasta.", "Easy meat-free pasta dinner idea?"),
     "Boil 200 g of spaghetti. Meanwhile fry two sliced garlic cloves in olive oil, add a tin of cherry "
     "tomatoes, a pinch of chilli and salt, and simmer ten minutes. Toss with the pasta, a handful of "
     "spinach and grated parmesan."),
)


def answer_pairs() -> list[tuple[str, str, int]]:
    """(request, answer, group) for every phrasing; group is the entry's index (its topic)."""
    return [(request, answer, i) for i, (requests, answer) in enumerate(ANSWERS) for request in requests]
