"""Route ``analytics-docs``: Metricly's product-analytics docs assistant (issue 15 evaluation set).

Written for tokenward for this set; never used for tuning. See bench/purpose_build_sets.py.
Its users paste SDK logs, API responses, configs and the SQL they run in Metricly.
"""

from __future__ import annotations

ROUTE = {
    "name": "analytics-docs",
    "description": (
        "Documentation assistant for Metricly, a product analytics platform: tracking events with the "
        "JavaScript, iOS, Android and Python SDKs, the HTTP ingestion API, identifying users and merging "
        "identities, funnels, retention and cohorts, dashboards and alerts, Metricly SQL and its tables, "
        "warehouse exports to BigQuery and Snowflake, data governance, SSO and roles, event quotas and "
        "billing, and what Metricly error messages mean."
    ),
    "in_examples": (
        "How do I track a custom event with the JavaScript SDK?",
        "Why does my funnel show zero conversions for the last step?",
        "What does 'quota exceeded for project' mean on the ingestion API?",
        "How do I merge an anonymous user with a logged-in user?",
        "Can I export raw events to Snowflake every hour?",
    ),
    "out_examples": (
        "Write a React todo app",
        "Explain how neural networks learn",
        "Write a blog post about remote work",
        "Fix this Java NullPointerException in my Spring service",
        "Give me a marketing plan for my bakery",
    ),
    "generic": None,
}

DIRECT: tuple[str, ...] = (
    "How do I install the Metricly JS snippet with Google Tag Manager?",
    "What's the difference between track and page calls?",
    "How do I set user properties after signup in the iOS SDK?",
    "Do events sent before identify get attached to the user?",
    "How long does it take for events to show up in the live view?",
    "What's the max payload size for the batch ingestion endpoint?",
    "How do I send events server side from Python?",
    "Can I backfill historical events with old timestamps?",
    "How are sessions defined in Metricly, 30 minutes of inactivity?",
    "How do I build a funnel where the steps must happen within one day?",
    "Can a funnel step be 'any of' two events?",
    "What's the difference between N-day and unbounded retention?",
    "How do I create a cohort of users who did checkout 3 times in 30 days?",
    "Can I use a cohort as a filter in a dashboard?",
    "How do I set up an alert when daily signups drop by 20%?",
    "Is there a way to share a dashboard with people outside my org?",
    "What tables are available in Metricly SQL?",
    "How do I query event properties in Metricly SQL, they're nested JSON?",
    "Does Metricly SQL support window functions?",
    "Why is my SQL query limited to 10,000 rows?",
    "How do I schedule a BigQuery export?",
    "What's the schema of the Snowflake export tables?",
    "Are deleted users removed from the warehouse export too?",
    "How do I delete a user's data for a GDPR request?",
    "Can I block an event name from being ingested?",
    "How do I rename an event without losing history?",
    "What does the 'Lexicon' do?",
    "Which SAML attributes does Metricly expect from Okta?",
    "What can a 'Viewer' role do compared to 'Analyst'?",
    "How are monthly tracked users counted for billing?",
    "What happens when we go over our event quota?",
    "Can I set a sampling rate on the Android SDK to save quota?",
    "How do I disable automatic tracking of clicks in the JS SDK?",
    "Is the JS SDK blocked by ad blockers and how do I proxy it?",
    "How do I use a custom domain for the ingestion endpoint?",
    "Does the React Native SDK support offline queueing?",
    "How do I flush events before the app closes on iOS?",
    "What is the rate limit of the ingestion API per project?",
    "How do I authenticate to the export API, token or basic auth?",
    "Where do I find my project token vs API secret?",
    "Can I have two valid API secrets at once while I swap them on our servers?",
    "Why do I see duplicate events with the same insert_id?",
    "How does deduplication with insert_id work?",
    "What time zone are reports shown in, and can I change it per project?",
    "Can I track revenue and see it in a funnel?",
    "How do I compare two date ranges on one chart?",
    "How do I group a report by a user property that changed over time?",
    "Do group analytics (accounts) cost extra?",
    "How do I set up group keys for B2B accounts in the Python SDK?",
    "Why does the retention chart for last week look incomplete?",
    "How do I build an A/B test report with Metricly experiments?",
    "What does 'statistical significance not reached' mean in the experiment view?",
    "Can I import events from a CSV file?",
    "How do I connect Segment as a source?",
    "Is there a Terraform provider for Metricly projects?",
    "What's the data retention period on the Growth plan?",
    "Can I restrict which teammates see a sensitive event property?",
    "How do I mask IP addresses at ingestion?",
    "Is Metricly data hosted in the EU?",
    "How do I move a project from the US to the EU data residency?",
    "What does the error 'invalid distinct_id' mean?",
    "How do I track page views in a single page app with the JS SDK?",
    "What's the recommended event naming convention?",
    "Can I annotate a chart with a release date?",
    "How do I export a chart to CSV?",
    "How can I see which SDK version sent an event?",
    "Why is the user count in the funnel different from the insights chart?",
)

SHORT: tuple[str, ...] = (
    "events not showing",
    "sql timeout",
    "why is my dashboard empty???",
    "429",
    "quota",
    "your docs are wrong about the batch endpoint",
    "export failed again",
    "sso broken",
    "identify not working",
    "ios sdk crash",
    "ok and android?",
    "same error",
    "still duplicated",
    "nope",
    "funnel wrong",
    "billing spike this month, what happened",
    "retention chart broken since Tuesday",
    "token?",
    "this is the third time the snowflake export fails, we pay for this",
    "gtm",
    "ad blockers",
    "cohort not updating",
    "how to delete user",
    "insert_id?",
    "eu hosting",
    "wtf happened to our events yesterday",
)

FOLLOW_UPS: tuple[tuple[tuple[str, str], str], ...] = (
    (
        ("How do I track events server side?", "Use the Python SDK: metricly.track(distinct_id, 'Event', properties)."),
        "and for batches of 1000?",
    ),
    (
        ("Why don't I see events?", "Check the project token in init and whether the debug log shows 200 responses."),
        "debug log shows 200 but still nothing",
    ),
    (
        ("How do I query properties in Metricly SQL?", "Use properties['plan'] on the events table."),
        "and nested ones like properties.cart.items?",
    ),
    (
        ("What's the ingestion rate limit?", "2,000 events per second per project, bursts up to 5,000."),
        "what happens above that, are they dropped?",
    ),
    (
        ("How do I set up SSO?", "Settings > Security > SSO, then upload your IdP metadata."),
        "we use Azure AD, same thing?",
    ),
    (
        ("Can I export to BigQuery?", "Yes, hourly or daily; you grant our service account write access to a dataset."),
        "which role exactly",
    ),
    (
        (
            "How do sessions work?",
            "A session ends after 30 minutes of inactivity or at midnight in the project time zone.",
        ),
        "can I change 30 to 15",
    ),
    (
        (
            "Why is the funnel different from insights?",
            "Funnels count users who did the steps in order within the window; insights count all users.",
        ),
        "ah makes sense. what window is default?",
    ),
    (
        ("How do I delete a user's data?", "Use the GDPR API: POST /api/gdpr/delete with the distinct_ids."),
        "does that remove it from the snowflake export too",
    ),
    (
        ("How do I mask IPs?", "Set ip: false in the SDK init, or turn on IP masking in project settings."),
        "which one is better",
    ),
    (
        ("What's MTU?", "Monthly tracked users: distinct users with at least one event in the month."),
        "do anonymous users count",
    ),
    (
        ("How do I flush on iOS?", "Call Metricly.shared.flush() in applicationDidEnterBackground."),
        "swiftui doesn't have that",
    ),
    (
        ("How do I use insert_id?", "Send a unique insert_id per event; duplicates within 7 days are dropped."),
        "7 days from what",
    ),
    (
        ("Can I rename an event?", "Yes, in Lexicon: set a display name; the raw name stays the same."),
        "and in SQL which name do I use",
    ),
    (
        ("Why is my SQL query slow?", "Filter on the time column first; queries scan only the partitions they need."),
        "I do, see: WHERE time > now() - interval '7 days'",
    ),
    (
        ("How do I proxy the JS SDK?", "Point api_host to your own domain and forward /track to our endpoint."),
        "nginx example?",
    ),
    (("What roles exist?", "Owner, Admin, Analyst, Viewer."), "can a viewer create dashboards"),
    (
        (
            "How do I group by a changing user property?",
            "Use the property's value at event time, stored on each event as $user_props.",
        ),
        "where's that in the UI",
    ),
    (
        ("Is there a Terraform provider?", "Yes, metricly/metricly, for projects, roles and exports."),
        "does it support alerts yet",
    ),
    (("What's the max batch size?", "2,000 events or 1 MB per request, whichever comes first."), "gzip allowed?"),
    (
        ("Our export failed", "The last run failed with a permission error on the dataset."),
        "we changed the service account yesterday, that's it probably",
    ),
    (("How do cohorts refresh?", "Dynamic cohorts recompute every hour."), "can I force it"),
    (
        (
            "How do experiments compute significance?",
            "A two-sided t-test on the conversion metric per variant, 95% by default.",
        ),
        "can we use bayesian instead",
    ),
    (("Can I import CSVs?", "Yes, up to 1 GB per file via Data > Import."), "what columns are required"),
    (
        ("Why is last week's retention incomplete?", "Users who joined late in the week haven't had 7 days yet."),
        "ok so ignore the last bucket",
    ),
)

PASTED: tuple[str, ...] = (
    "Getting this from the ingestion API:\n"
    '{"status": 400, "error": "invalid_event", "detail": "property \'price\' expected number, got string", '
    '"event_index": 17}\nhow do I find which event that is?',
    "[Metricly] flush failed: HTTP 429 Too Many Requests (retry-after: 12)\n"
    "[Metricly] flush failed: HTTP 429 Too Many Requests (retry-after: 12)\nis the SDK retrying on its own?",
    "metricly.init('pk_live_8c1...', {\n  api_host: 'https://t.example-shop.com',\n  autocapture: true,\n"
    "  persistence: 'localStorage',\n  batch_size: 50\n})\nevents show up twice since I added batch_size, why?",
    "My Metricly SQL:\nSELECT date_trunc('day', time) d, count(DISTINCT distinct_id)\nFROM events\n"
    "WHERE name = 'Signup' AND time > now() - interval '30 days'\nGROUP BY 1\n"
    'Error: column "distinct_id" does not exist. What\'s the right column name?',
    "Snowflake export log:\n2024-05-02T03:00:11Z export job 8812 started\n"
    "2024-05-02T03:04:52Z ERROR: SQL access control error: Insufficient privileges to operate on schema 'RAW'\n"
    "what grants does Metricly need?",
    'Traceback (most recent call last):\n  File "worker.py", line 41, in send\n'
    "    metricly.track(uid, 'Order Completed', props)\n"
    '  File ".../metricly/client.py", line 212, in track\n'
    "    raise MetriclyError('distinct_id must be a non-empty string')\n"
    "metricly.errors.MetriclyError: distinct_id must be a non-empty string\nuid is an int from our db",
    "Android logcat:\nE/Metricly: Failed to persist event queue: SQLiteDatabaseLockedException\n"
    "W/Metricly: Dropping 34 events\nis this a known issue in 4.2.1?",
    "SAML response error in Metricly login: 'Audience restriction mismatch: expected "
    "https://app.metricly.io/saml/metadata/9921'. What do I put in Okta?",
    'terraform plan:\n  # metricly_export.bigquery will be updated in-place\n  ~ schedule = "daily" -> "hourly"\n'
    "Error: 403 plan does not allow hourly exports\nwhich plan do we need?",
    "Query:\nSELECT properties['utm_source'] AS src, count(*) FROM events WHERE name='Page View' GROUP BY src\n"
    "returns 'null' for 80% of rows, but I'm sure we send utm params",
    "iOS console: [Metricly] Ignoring event 'Purchase': reserved property name '$time' used",
    "curl -X POST https://api.metricly.io/import -u $SECRET: -d @events.json\n"
    '{"error":"timestamp out of range: events older than 5 days need ?strict=0 and the import endpoint"}',
    "The dashboard shows 'This report is using sampled data (10%)'. How do I turn sampling off?",
    "Alert config:\ncondition: signups.daily < 0.8 * avg_7d\nnotify: slack #growth\n"
    "It fired every day this week although signups are flat. Is avg_7d computed including today?",
    "GTM preview: Tag 'Metricly - Track' fired, but Network tab shows POST /track -> (blocked:other). CSP issue?",
    "Python SDK debug:\nDEBUG metricly.consumer: posting 500 events (823 KB)\n"
    "DEBUG metricly.consumer: response 413 Payload Too Large\nwhat's the limit per request?",
    "Our experiment summary: Variant B +4.2% conversion, p=0.08, 'Not significant'. How many more days do we need?",
    "React Native: 'Invariant Violation: Native module MetriclyReactNative tried to override "
    "MetriclyReactNative'. Upgrading from 2.x to 3.x",
    "Billing page: 'Events this cycle: 48.2M / 40M (overage billed at $0.00003/event)'. Can we cap ingestion?",
    "Lexicon shows 'Checkout Started' 2.1M and 'checkout_started' 1.9M. How do I merge them in reports?",
)

OTHER_LANG: tuple[tuple[str, str], ...] = (
    ("fr", "Comment envoyer des événements depuis le SDK iOS ?"),
    ("fr", "Pourquoi mon entonnoir affiche zéro conversion à la dernière étape ?"),
    ("fr", "Est-ce que les données Metricly sont hébergées en Europe ?"),
    ("fr", "erreur 429 sur l'API d'ingestion, que faire ?"),
    ("es", "¿Cómo exporto los eventos a BigQuery?"),
    ("es", "¿Qué significa el error 'invalid distinct_id'?"),
    ("es", "¿Cómo configuro SSO con Okta en Metricly?"),
    ("es", "mis eventos no aparecen en el dashboard"),
    ("de", "Wie identifiziere ich einen Nutzer nach dem Login im JS SDK?"),
    ("de", "Welche Tabellen gibt es in Metricly SQL?"),
    ("de", "Wie lösche ich die Daten eines Nutzers nach DSGVO?"),
    ("de", "warum sind meine Events doppelt?"),
    ("it", "Come creo una coorte di utenti attivi negli ultimi 7 giorni?"),
    ("it", "Qual è il limite di eventi al secondo dell'API?"),
    ("it", "Come si calcolano gli utenti tracciati mensili?"),
    ("it", "l'export verso Snowflake fallisce, perché?"),
    ("pt", "Como faço para rastrear eventos no Android?"),
    ("pt", "Por que o gráfico de retenção da última semana está incompleto?"),
    ("pt", "Como configuro alertas no Metricly?"),
    ("pt", "consulta SQL muito lenta, alguma dica?"),
    ("nl", "Hoe stuur ik events vanaf mijn server met de Python SDK?"),
    ("nl", "Wat betekent 'quota exceeded' in Metricly?"),
    ("nl", "Kan ik een dashboard delen met een klant?"),
    ("nl", "hoe werkt deduplicatie met insert_id?"),
    ("tl", "Paano ko ise-set up ang Metricly sa website ko?"),
    ("tl", "Bakit hindi lumalabas ang mga event sa dashboard?"),
    ("tl", "Paano mag-export ng data papuntang BigQuery?"),
    ("tl", "ano ibig sabihin ng error na 429?"),
    ("zh", "怎么用JavaScript SDK追踪自定义事件？"),
    ("zh", "漏斗的最后一步为什么是零？"),
    ("zh", "Metricly SQL 支持窗口函数吗？"),
    ("zh", "如何把数据导出到Snowflake？"),
    ("ja", "iOS SDKでユーザープロパティを設定する方法は？"),
    ("ja", "イベントがダッシュボードに表示されません"),
    ("ja", "リテンションチャートの見方を教えてください"),
    ("ja", "APIのレート制限はいくつですか？"),
    ("ar", "كيف أتتبع الأحداث باستخدام SDK الخاص بجافاسكريبت؟"),
    ("ar", "لماذا لا تظهر الأحداث في لوحة التحكم؟"),
    ("ar", "كيف أحذف بيانات مستخدم وفقا لطلب GDPR؟"),
    ("ar", "ما معنى الخطأ quota exceeded؟"),
    ("hi", "JavaScript SDK से कस्टम इवेंट कैसे ट्रैक करें?"),
    ("hi", "मेरे इवेंट डैशबोर्ड में क्यों नहीं दिख रहे?"),
    ("hi", "BigQuery में डेटा एक्सपोर्ट कैसे करें?"),
    ("hi", "funnel में conversion zero क्यों दिख रहा है?"),
    ("pl", "Jak śledzić zdarzenia w aplikacji na Androida?"),
    ("pl", "Dlaczego eksport do Snowflake się nie udaje?"),
    ("pl", "Jak działa limit zdarzeń w planie Growth?"),
    ("pl", "zdarzenia się dublują, co robić"),
    ("tr", "JavaScript SDK ile özel olay nasıl takip edilir?"),
    ("tr", "Huni raporunda son adım neden sıfır?"),
    ("tr", "BigQuery'ye dışa aktarma nasıl ayarlanır?"),
    ("tr", "429 hatası alıyorum, ne yapmalıyım?"),
)

NEAR_DOMAIN: tuple[str, ...] = (
    "Write a SQL query on our Postgres inventory database that finds products below reorder level",
    "Design a star schema for our company's sales data warehouse",
    "Build a Kafka pipeline that streams clickstream data into ClickHouse",
    "Write a dbt model that calculates monthly recurring revenue for our finance team",
    "Explain how to compute statistical power for an A/B test for my statistics thesis",
    "Write a Python script that scrapes competitor prices every night",
    "Fix the state bug in my React checkout component",
    "Set up Google Analytics 4 ecommerce tracking on my Shopify store",
    "Write an Airflow DAG that loads CSVs from S3 into Redshift",
    "Compare Amplitude, Heap and PostHog for my consulting client's report",
    "Write a Spark job that deduplicates 2 billion log lines",
    "Create a Looker dashboard for our hospital's patient wait times",
    "Explain the difference between OLAP and OLTP databases for my exam",
    "Write a Grafana alerting rule for CPU usage above 80% on our Kubernetes nodes",
    "Optimise this MySQL query for our e-commerce orders table: SELECT * FROM orders o JOIN customers c ...",
    "Write a machine learning churn prediction model in scikit-learn",
    "Build a Flask API that serves product recommendations",
    "Write a Terraform module for an AWS VPC with public and private subnets",
    "How do I become a data analyst with no degree?",
    "Write a Python script that reads Excel files and makes pivot tables for my accountant",
    "Design an event tracking plan for a mobile game studio using Firebase",
    "Explain how to configure Okta SSO for Salesforce",
    "Write a GDPR privacy policy for my online shop",
    "Write Snowflake stored procedures for our payroll calculations",
    "Set up a self-hosted Matomo server with Docker",
    "Write a regex to parse nginx access logs into fields",
    "Explain p-values and confidence intervals for my psychology class",
    "Write a BigQuery ML model that forecasts store sales",
    "Debug my Django migration error: django.db.utils.ProgrammingError: relation already exists",
    "Create a KPI dashboard template in Excel for a restaurant chain",
    "Write the pitch deck for our product analytics startup that competes with Metricly",
    "Write a Pandas script to clean this survey dataset and plot results",
    "What's the best laptop for data science under 1500 dollars?",
    "Implement a HyperLogLog in C++ for counting distinct users",
    "Write an nginx config to load balance three Node.js servers",
)

OPENINGS: tuple[str, ...] = (
    "Hi, we use Metricly at work and the SDK is working fine. Separately,",
    "Hey, thanks for the SQL help yesterday. Something else:",
    "Hello! Our BigQuery export runs fine now.",
    "Hi, I'm an analyst on the Growth plan, but this isn't about Metricly:",
    "Hey there, quick break from dashboards:",
    "Hello, Metricly admin here.",
    "Hi, events are flowing again, great. Now",
)

TOPIC_CHANGES: tuple[tuple[tuple[str, str], str], ...] = (
    (
        ("How do I flush events on iOS?", "Call flush() when the app goes to background."),
        "thanks. now write me a cover letter for a data analyst job",
    ),
    (("What's the batch limit?", "2,000 events or 1 MB."), "ok. write a poem about data"),
    (("How do I set up SSO?", "Settings > Security > SSO."), "done. can you explain the French Revolution"),
    (
        ("Why is my funnel empty?", "The last step's event name is misspelled."),
        "ha, fixed. now write a snake game in python",
    ),
    (("Can I export to Snowflake?", "Yes, hourly or daily."), "great. give me a 3 day itinerary in Barcelona"),
    (("What is MTU?", "Monthly tracked users."), "ok. write a birthday message for my manager"),
    (("How do cohorts refresh?", "Hourly."), "ok. Now implement a red-black tree in Java for my algorithms class"),
    (("How do I mask IPs?", "Set ip: false in init."), "thanks. what's the best diet for running a marathon"),
    (("Why duplicates?", "Missing insert_id."), "fixed. Write an essay about the ethics of AI, 1000 words"),
    (
        ("What's the rate limit?", "2,000 events per second."),
        "cool. now help me write a Django REST API for a library system",
    ),
    (
        ("Is data hosted in the EU?", "EU residency is available on Enterprise."),
        "ok. summarize the EU AI Act for my law class",
    ),
    (("Can I import CSV?", "Yes, up to 1 GB per file."), "thanks. write a tinder bio for me"),
)
