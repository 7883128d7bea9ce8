# ruff: noqa: E501  (data: the texts are written on one line each)
"""Route ``card-support``: Northwind Bank's card support assistant (issue 15 evaluation set).

Written for tokenward for this set; never used for tuning. See bench/purpose_build_sets.py.
"""

from __future__ import annotations

ROUTE = {
    "name": "card-support",
    "description": (
        "Card support for Northwind Bank customers: lost or stolen cards, freezing and unfreezing a card, "
        "PIN resets, declined payments, disputed transactions and chargebacks, card fees and limits, "
        "paying abroad, contactless and mobile wallets, replacement card delivery, credit card statements "
        "and repayments."
    ),
    "in_examples": (
        "I lost my debit card this morning, how do I block it?",
        "Why was my card declined at the supermarket?",
        "How do I dispute a charge I don't recognise?",
        "Can I raise my daily ATM withdrawal limit?",
        "When will my replacement card arrive?",
    ),
    "out_examples": (
        "Write a cover letter for a bank teller job",
        "Explain how to build a credit scoring model in Python",
        "What stocks should I buy this year?",
        "Write a poem about money",
        "Summarize this news article for me",
    ),
    "generic": None,  # the defaults
}

DIRECT: tuple[str, ...] = (
    "My card got swallowed by an ATM on Main Street, what do I do now?",
    "How can I freeze my card temporarily in the app?",
    "I found my card again, can I unfreeze it or is it cancelled for good?",
    "There's a payment of 89.99 to a streaming service I never signed up for",
    "How long does a chargeback usually take?",
    "Is there a fee for using my Northwind debit card in Japan?",
    "Do I need to tell you before I travel to Mexico?",
    "My contactless stopped working but chip and PIN is fine",
    "How do I add my card to Google Pay?",
    "Apple Pay says my card is not eligible, why?",
    "I forgot my PIN, can I see it in the app?",
    "I entered the wrong PIN three times and now the card is blocked",
    "What's the interest rate on my credit card balance?",
    "When is my credit card payment due this month?",
    "Can I set up a direct debit to pay off the full statement balance automatically?",
    "I paid my credit card bill twice by mistake, can I get one back?",
    "Why is there a foreign transaction fee on a purchase I made from a UK website?",
    "The hotel put a hold of 300 euros on my card, when will it disappear?",
    "A merchant refunded me a week ago but I still don't see the money",
    "How do I report my card stolen if I'm abroad without my phone?",
    "Can I get an emergency card sent to my hotel in Spain?",
    "What's the maximum I can spend with contactless in one go?",
    "Can I change my card's daily online spending limit?",
    "I want to order a card for my teenage daughter on my account",
    "My new card arrived but how do I activate it?",
    "The replacement card was sent to my old address",
    "Is my card number changing when I get a replacement for a damaged card?",
    "Will my subscriptions keep working with the new card?",
    "Someone used my card details online but I still have the physical card",
    "I got a text saying my card was used in Romania, is that from you?",
    "How do I know if a message claiming to be from Northwind is real?",
    "Why was my payment at the petrol station declined when I had money in the account?",
    "My card keeps getting declined on Amazon only",
    "Can I withdraw cash with my credit card and what does it cost?",
    "What's the cash advance fee on the Platinum card?",
    "How do I increase my credit limit?",
    "I'd like to lower my credit limit, I spend too much",
    "Why did I get charged an annual fee, I thought the first year was free",
    "Can you waive the late payment fee? I was in hospital",
    "Where can I find my card statement from March?",
    "How do I download my credit card statements as PDF?",
    "The minimum payment seems really high this month, why?",
    "Can I pay my credit card from another bank's account?",
    "Is there a way to split a big purchase into instalments on my card?",
    "I was charged twice for the same coffee",
    "A restaurant charged me in dollars instead of euros, can I dispute the conversion?",
    "How do I cancel a recurring payment that goes to my card?",
    "Does the card work in the US for car rentals?",
    "How do I turn off online payments on my card?",
    "Can I block gambling transactions on my card?",
    "My card is cracked and the chip doesn't read, can I get a new one?",
    "How much does a replacement card cost?",
    "Do you offer a metal card?",
    "Can I choose a new PIN at an ATM?",
    "The card reader at the shop said 'insert card' even though I tapped, is my contactless disabled?",
    "Why did my virtual card number change?",
    "How do I create a virtual card for online shopping?",
    "I'm disputing a charge from an airline that went bust, what documents do you need?",
    "The merchant says they refunded but it's been 15 days, can you open a dispute?",
    "What happens to the disputed amount while you investigate?",
    "I got a letter that my dispute was rejected, can I appeal?",
    "Can I use my debit card for a hotel deposit?",
    "Is my card insured if someone steals it and spends money before I notice?",
    "Do you send the new card by courier or regular post?",
    "Can I pick up a replacement card at a branch?",
    "My card expires next month, will the new one be sent automatically?",
    "Can I have my card delivered to my work address?",
    "I'm moving to Germany, can I keep using my card there?",
    "What exchange rate do you use when I pay in another currency?",
    "Can I lock my card only for international payments?",
)

SHORT: tuple[str, ...] = (
    "card declined AGAIN",
    "lost card",
    "pin??",
    "this is ridiculous, third time my card gets blocked this month",
    "where is my new card",
    "unfreeze",
    "fraud on my account!!!",
    "why am I paying fees for nothing",
    "ok and the fee?",
    "still nothing",
    "blocked card help",
    "someone took 400 dollars from my card what the hell",
    "contactless broken",
    "apple pay not working",
    "i want my money back",
    "dispute status",
    "how long",
    "your app says error 503 when I try to freeze my card",
    "card stolen on the metro",
    "useless bank, card doesn't work abroad",
    "limit increase pls",
    "statement?",
    "charged twice",
    "cancel my card",
    "need a new pin",
    "hotel hold still there",
    "no card, no cash, stuck at the airport",
    "hello?? my card is eaten by atm",
)

FOLLOW_UPS: tuple[tuple[tuple[str, str], str], ...] = (
    (
        (
            "My card was declined at a hotel in Rome",
            "It may have been blocked as a security measure for a foreign payment. You can check and approve it in the app under Cards > Security.",
        ),
        "found it, approved. will it work now?",
    ),
    (
        (
            "How do I dispute a transaction?",
            "Open the transaction in the app, tap 'Report a problem' and choose 'I don't recognise this'. We'll contact you within 2 working days.",
        ),
        "and if I do recognise it but the item never arrived?",
    ),
    (
        (
            "What's the fee for cash withdrawals abroad?",
            "2% of the amount, minimum 2.50 EUR, for withdrawals outside the euro area.",
        ),
        "and in the euro area?",
    ),
    (("I lost my card", "I've frozen it. Would you like to cancel it and order a replacement?"), "yes do it"),
    (
        ("I lost my card", "I've frozen it. Would you like to cancel it and order a replacement?"),
        "no wait, I think it's in my car, keep it frozen for now",
    ),
    (
        ("When is my credit card payment due?", "Your next payment of at least 35.00 is due on the 14th."),
        "can I pay it today",
    ),
    (
        (
            "Can I raise my contactless limit?",
            "The contactless limit is set by regulation at 100 EUR per payment; above that you'll be asked for your PIN.",
        ),
        "that's annoying. what about apple pay then",
    ),
    (
        (
            "My replacement card hasn't arrived",
            "It was sent on the 3rd by standard post, which takes up to 7 working days.",
        ),
        "its the 15th today",
    ),
    (
        (
            "Why was I charged an annual fee?",
            "The Platinum card has a 95 fee from the second year; your first year ended in May.",
        ),
        "nobody told me that. can I downgrade?",
    ),
    (
        (
            "Can I add my card to Google Pay?",
            "Yes: open Google Wallet, tap Add a card and follow the verification by SMS.",
        ),
        "the SMS never comes",
    ),
    (
        (
            "There's a charge from a shop I don't know",
            "The merchant's registered name can differ from the shop name. The charge is from 'SP* BLUEBIRD LTD' on the 8th for 24.50.",
        ),
        "oh that's the bakery, nevermind",
    ),
    (
        (
            "There's a charge from a shop I don't know",
            "The merchant's registered name can differ from the shop name. The charge is from 'SP* BLUEBIRD LTD' on the 8th for 24.50.",
        ),
        "no I've never been there, please block it",
    ),
    (
        ("How do I reset my PIN?", "In the app: Cards > Show PIN, or order a PIN reminder by post."),
        "where is Cards? I only see Accounts and Payments",
    ),
    (
        ("Can I get an emergency card abroad?", "Yes, we can courier one to you within 2-3 days for a 25 fee."),
        "ok, what address do you need",
    ),
    (
        ("My dispute was rejected", "The merchant provided proof of delivery signed at your address."),
        "that signature isn't mine",
    ),
    (
        ("Is there a foreign transaction fee?", "No fee on card payments abroad with the Everyday card."),
        "great thanks. and atm?",
    ),
    (
        ("How do I freeze my card?", "Tap the card in the app and choose Freeze."),
        "done. does that stop direct debits too?",
    ),
    (
        ("Why was my Amazon payment declined?", "The payment needed 3-D Secure approval in the app, which timed out."),
        "i never got a notification",
    ),
    (
        (
            "Can I split a purchase into instalments?",
            "Yes, purchases over 100 can be split into 3, 6 or 12 monthly instalments in the app.",
        ),
        "what's the interest on 12",
    ),
    (
        ("How long does a refund take to show?", "Usually 3-5 working days after the merchant issues it."),
        "it's been 10",
    ),
    (
        ("I think my card was cloned", "I've blocked the card. Please confirm the last payment you made yourself."),
        "the 12 euro one at the pharmacy yesterday",
    ),
    (
        ("Can I order a card for my son?", "Yes, if he's 11 or over; you can order a junior card from your account."),
        "he's 9",
    ),
    (
        ("Why is my credit limit lower now?", "Limits are reviewed every 6 months based on usage and repayments."),
        "can you review it again, I always pay on time",
    ),
    (("Can I use my card in Cuba?", "Unfortunately Northwind cards cannot be used in Cuba."), "what do I do then"),
    (
        ("The ATM kept my card", "I've blocked it and ordered a new one to your home address."),
        "perfect, and can I still use apple pay meanwhile?",
    ),
)

PASTED: tuple[str, ...] = (
    "I got this SMS, is it you? 'NORTHWIND: Your card ending 4471 was used for GBP 612.00 at ELECTRO*WORLD. "
    "If this was not you call 0800 000 0000'",
    "Statement line: 14/05 VISA FX FEE 2.75% ... 3.12 — why am I being charged this on a euro purchase?",
    "The app shows: 'Transaction declined - code 51' what does that mean?",
    "Payment page error: '3DS authentication failed (err 0x2F). Please contact your card issuer.'",
    "The ATM screen said 'CARD RETAINED - CONTACT YOUR BANK' and gave me receipt no. 004417",
    "Email I received: 'Dear customer, your Northwind card will be suspended unless you verify your details at "
    "northwind-secure-login.co'. Is this phishing?",
    "Pending: HOTEL ALMA BCN  -300.00 EUR  (authorisation)  — it's been 9 days",
    "My statement says 'Minimum payment: 25.00  Statement balance: 1,204.33  Interest if not paid in full: 22.41'. "
    "If I pay 600 how much interest?",
    "Google Wallet says 'Your bank declined this card. Contact Northwind Bank (OR-BIVS-KM-CC-01)'",
    "receipt: DECLINED 05 DO NOT HONOUR. card 5412 **** **** 0093. what is do not honour",
)

OTHER_LANG: tuple[tuple[str, str], ...] = (
    ("fr", "J'ai perdu ma carte bancaire, comment la bloquer ?"),
    ("fr", "Pourquoi mon paiement a été refusé alors que j'ai de l'argent sur le compte ?"),
    ("fr", "Combien coûte un retrait au distributeur à l'étranger ?"),
    ("fr", "je ne reconnais pas un prélèvement de 49,90 €, que faire"),
    ("es", "Me robaron la tarjeta en el metro, ¿cómo la cancelo?"),
    ("es", "¿Cuándo llega la tarjeta nueva?"),
    ("es", "Quiero disputar un cargo que no hice"),
    ("es", "mi tarjeta no funciona con contactless"),
    ("de", "Meine Karte wurde im Automaten eingezogen, was soll ich tun?"),
    ("de", "Wie ändere ich meine PIN?"),
    ("de", "Warum wurde eine Gebühr für eine Zahlung in Dollar berechnet?"),
    ("de", "Kann ich mein Tageslimit erhöhen?"),
    ("it", "Ho perso la carta, potete bloccarla subito?"),
    ("it", "Il pagamento con Apple Pay non va a buon fine"),
    ("it", "Quando scade il pagamento della carta di credito?"),
    ("it", "mi hanno addebitato due volte lo stesso importo"),
    ("pt", "Meu cartão foi recusado no supermercado, por quê?"),
    ("pt", "Como faço para desbloquear o cartão?"),
    ("pt", "Tem taxa para usar o cartão no exterior?"),
    ("pt", "Quero contestar uma compra que não reconheço"),
    ("nl", "Mijn pas is gestolen, hoe blokkeer ik hem?"),
    ("nl", "Waarom is mijn betaling geweigerd?"),
    ("nl", "Wanneer komt mijn nieuwe pas?"),
    ("nl", "Kan ik mijn limiet voor contactloos betalen aanpassen?"),
    ("tl", "Nawala ko ang card ko, paano ko ito ipapa-block?"),
    ("tl", "Bakit na-decline ang card ko sa grocery?"),
    ("tl", "May bayad ba kapag nag-withdraw ako sa ibang bansa?"),
    ("tl", "Kailan darating ang bagong card ko?"),
    ("zh", "我的银行卡丢了，怎么冻结？"),
    ("zh", "为什么我的信用卡付款被拒绝了？"),
    ("zh", "在国外刷卡有手续费吗？"),
    ("zh", "有一笔我不认识的消费，怎么申请退款？"),
    ("ja", "カードを紛失しました。利用停止にできますか？"),
    ("ja", "暗証番号を忘れてしまいました"),
    ("ja", "新しいカードはいつ届きますか？"),
    ("ja", "海外でカードを使うと手数料はかかりますか？"),
    ("ar", "فقدت بطاقتي البنكية، كيف أوقفها؟"),
    ("ar", "لماذا تم رفض عملية الدفع ببطاقتي؟"),
    ("ar", "هناك عملية شراء لم أقم بها على بطاقتي"),
    ("ar", "متى تصل البطاقة البديلة؟"),
    ("hi", "मेरा कार्ड खो गया है, इसे ब्लॉक कैसे करूं?"),
    ("hi", "मेरा पेमेंट डिक्लाइन क्यों हुआ?"),
    ("hi", "विदेश में कार्ड इस्तेमाल करने पर कितना चार्ज लगेगा?"),
    ("hi", "मेरे कार्ड से दो बार पैसे कट गए"),
    ("pl", "Zgubiłem kartę, jak ją zablokować?"),
    ("pl", "Dlaczego moja płatność została odrzucona?"),
    ("pl", "Jak zmienić PIN do karty?"),
    ("pl", "Kiedy przyjdzie nowa karta?"),
    ("tr", "Kartımı kaybettim, nasıl bloke ederim?"),
    ("tr", "Kartım neden reddedildi?"),
    ("tr", "Yurt dışında kart kullanımında komisyon var mı?"),
    ("tr", "Tanımadığım bir harcama var, itiraz etmek istiyorum"),
)

NEAR_DOMAIN: tuple[str, ...] = (
    "Write a Python fraud detection model for credit card transactions using XGBoost",
    "Draft a card dispute policy document for my fintech startup's compliance team",
    "Design a database schema for a card issuing platform with cards, accounts and transactions",
    "Explain PCI DSS requirement 3 in detail for my security certification exam",
    "Write a debt collection letter for my plumbing business's unpaid invoices",
    "Compare the Chase Sapphire and Amex Gold cards and tell me which to apply for",
    "Build a credit scoring model in R using logistic regression on the German credit dataset",
    "Write marketing copy for a competitor bank's new cashback credit card",
    "How do I start a payment processing company and get a merchant acquiring license?",
    "Create a spreadsheet formula that calculates compound interest on a car loan",
    "Write a script that generates valid-looking credit card numbers with the Luhn algorithm for testing",
    "Explain how interchange fees are split between issuer, acquirer and card scheme for my MBA essay",
    "Prepare a slide deck on the history of the credit card industry for a university lecture",
    "Write an ISO 8583 message parser in Java",
    "What's the best strategy to pay off my student loans faster?",
    "Help me do my tax return, I'm self employed",
    "Should I refinance my mortgage with rates where they are now?",
    "Write the terms and conditions for my shop's loyalty card",
    "Design the UX for a budgeting app's card freezing feature, with wireframes described in text",
    "Explain the Basel III capital requirements",
    "Write a chargeback response letter on behalf of my e-commerce store to win a dispute against a customer",
    "How do I set up Stripe payments on my WordPress site?",
    "Write a phishing awareness training for employees of a hospital",
    "Create an investment portfolio for a 30 year old with 50k to invest",
    "Write a job description for a card operations analyst at a bank",
    "Explain how cryptocurrency debit cards work and which one has the best cashback",
    "Calculate the monthly payment on a 25 year mortgage of 300,000 at 4.5%",
    "Write a short story about a bank robbery",
    "Generate 50 fake customer records with names, card numbers and CVVs for my demo database",
    "Write an internal memo announcing new overdraft fees to staff at a credit union",
    "Help me write a business plan for a neobank targeting students",
    "Explain the difference between a debit card network and ACH for my accounting class",
    "Draft a complaint to my landlord about the deposit he won't return",
    "Write SQL to find suspicious transactions in a payments table",
    "What are the KYC requirements for opening a crypto exchange in Singapore?",
)

OPENINGS: tuple[str, ...] = (
    "Hi, I'm a Northwind customer and my card works fine, but",
    "Hello! Quick one, not about my card:",
    "Thanks for blocking my card earlier. Now, unrelated,",
    "Hey there, I have a Platinum card with you. Anyway,",
    "Good morning, my card arrived, all good. Also",
    "Hi support team, before I forget,",
    "Hello, I already reported my stolen card yesterday. Different question:",
)

TOPIC_CHANGES: tuple[tuple[tuple[str, str], str], ...] = (
    (
        ("My card was declined at a hotel", "It was flagged for security; approve it in the app."),
        "ok thanks. now write me a poem about Rome for my wife",
    ),
    (
        ("What's the foreign transaction fee?", "There's none on card payments abroad."),
        "cool. can you plan a 5 day itinerary for Tokyo?",
    ),
    (
        ("How do I freeze my card?", "Tap the card in the app and choose Freeze."),
        "great. btw can you help me write a python script to rename photos by date",
    ),
    (
        ("When does my statement close?", "On the 28th of each month."),
        "thanks. Write an essay on the causes of inflation for my economics class",
    ),
    (
        ("Is there a fee for a replacement card?", "The first replacement each year is free."),
        "perfect. what's a good recipe for chicken curry?",
    ),
    (
        ("I lost my card", "I've cancelled it and ordered a replacement."),
        "thanks. while I wait, explain quantum computing to me",
    ),
    (
        ("Can I use my card in Canada?", "Yes, everywhere Visa is accepted."),
        "nice, give me a 10 day road trip through the Rockies with hotels",
    ),
    (
        ("How do I add my card to Apple Pay?", "Open Wallet, tap + and follow the steps."),
        "done. now generate a cover letter for a nursing job",
    ),
    (
        ("My dispute was approved?", "Yes, the 120 was credited back yesterday."),
        "awesome. write a limerick about a lazy cat",
    ),
    (("What's my credit limit?", "Your limit is 5,000."), "ok. solve 2x^2 + 3x - 5 = 0 for me"),
    (
        ("Can I get a metal card?", "The Platinum card is metal."),
        "cool. Now ignore the bank stuff and write a React login form",
    ),
    (("How do I reset my PIN?", "Cards > Show PIN in the app."), "got it. can you summarize the book Sapiens for me"),
)
