"""Drives the browser playground in headless Chromium (Selenium) against a running fusion-gateway
on the embedded default (simulated models and web).

Usage: python playground_check.py BASE_URL [--keyed-url URL --key KEY] [--screenshot PATH]
  BASE_URL      a gateway without keys, e.g. http://127.0.0.1:8080
  --keyed-url   a second gateway that requires --key: the page must ask for it
  --screenshot  where to save a screenshot of the finished deliberation (PNG)

Every wait is on a DOM condition (polled), none on a fixed sleep, and the whole run is bounded
(--deadline seconds, 110 by default). Prints one line per passed check; exits non-zero with a
message (and a screenshot next to --screenshot or in the temp dir) on the first failure.
"""
import argparse
import json
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

parser = argparse.ArgumentParser()
parser.add_argument("base")
parser.add_argument("--keyed-url")
parser.add_argument("--key")
parser.add_argument("--screenshot")
parser.add_argument("--deadline", type=int, default=110)
args = parser.parse_args()
base = args.base.rstrip("/")


def on_deadline(*_):
    raise TimeoutError(f"the browser check ran past its {args.deadline} s deadline")


signal.signal(signal.SIGALRM, on_deadline)
signal.alarm(args.deadline)

console = []  # every browser console entry seen, over the whole run


class CheckFailed(Exception):
    pass


def check(name, condition, detail=""):
    if not condition:
        raise CheckFailed(f"{name}: {detail}")
    print(f"ok   {name}", flush=True)


def make_driver():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("FUSION_CHROMIUM", "/usr/bin/chromium")
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1440,2700", "--force-prefers-reduced-motion", "--no-first-run",
                 "--disable-extensions", "--disable-background-networking", "--disable-sync", "--lang=en-US"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(os.environ.get("FUSION_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=options)


def collect_console(driver):
    console.extend(driver.get_log("browser"))


def wait(driver, what, condition, timeout=30, poll=0.05):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=poll).until(lambda d: condition(d))
    except TimeoutException:
        raise CheckFailed(f"timed out after {timeout} s waiting for {what}")


def js(driver, script, *arguments):
    return driver.execute_script(script, *arguments)


def http_get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def active_streams(gateway):
    match = re.search(r"^fusion_gateway_active_streams (\S+)$", http_get(f"{gateway}/metrics"), re.M)
    return float(match.group(1)) if match else None


def eventually(condition, timeout=10.0, interval=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def turn_status(driver):
    return js(driver, "const t = [...document.querySelectorAll('.turn')].pop(); return t ? t.dataset.status : null")


def wait_turn_over(driver, timeout=45):
    wait(driver, "the turn to end", lambda d: turn_status(d) in ("done", "failed", "cancelled"), timeout, poll=0.1)
    return turn_status(driver)


def last_turn(driver):
    return driver.find_elements(By.CSS_SELECTOR, ".turn")[-1]


def open_page(driver, url):
    driver.get(url)
    check("page title", "Fusion playground" in driver.title, driver.title)


def wait_ready(driver):
    wait(driver, "the model list", lambda d: js(d, "return document.body.dataset.ready === 'true'"), 15)


def set_panel(driver, models):
    """A custom panel: unselect everything, then check (or add) each model."""
    driver.find_element(By.CSS_SELECTOR, '.preset[data-preset=""]').click()
    for model in models:
        box = js(driver, "return document.querySelector(`.model-option[data-model=\"${CSS.escape(arguments[0])}\"] input`)", model)
        if box is None:
            field = driver.find_element(By.ID, "custom-model")
            field.clear()
            field.send_keys(model)
            driver.find_element(By.ID, "add-model").click()
        elif not box.is_selected():
            box.click()


def send(driver, prompt):
    field = driver.find_element(By.ID, "prompt")
    field.clear()
    field.send_keys(prompt)
    driver.find_element(By.ID, "send").click()


# ------------------------------------------------------------------------------------------ checks

def module_checks(driver):
    """The page's own modules, imported in the page: the SSE parser fed the same stream whole,
    byte by byte and split at every position, with LF, CRLF and CR line ends; the judge-item
    scanner fed character by character; the text renderer given hostile input."""
    result = driver.execute_async_script("""
      const done = arguments[arguments.length - 1];
      (async () => {
        const { SSEParser } = await import('/playground/sse.js');
        const { JudgeItemScanner } = await import('/playground/judge-items.js');
        const { renderText } = await import('/playground/text.js');
        const stream = ': keep-alive\\n\\nevent: fusion.member.delta\\ndata: {"index":0,\\ndata: "delta":"é ✓"}\\n\\n' +
          'data: {"x":1}\\n\\n:comment\\ndata:no-space\\n\\nevent: ignored-without-data\\n\\ndata: [DONE]\\n\\n';
        const expected = JSON.stringify([["fusion.member.delta", '{"index":0,\\n"delta":"é ✓"}'], ["message", '{"x":1}'], ["message", "no-space"], ["message", "[DONE]"]]);
        const failures = [];
        for (const [name, text] of [["LF", stream], ["CRLF", stream.replaceAll("\\n", "\\r\\n")], ["CR", stream.replaceAll("\\n", "\\r")]]) {
          const splits = [[text], [...text]];
          for (let i = 1; i < text.length; i++) splits.push([text.slice(0, i), text.slice(i)]);
          for (const pieces of splits) {
            const events = [];
            const p = new SSEParser((e) => events.push([e.event, e.data]));
            pieces.forEach((piece) => p.push(piece));
            p.end();
            if (JSON.stringify(events) !== expected) { failures.push(`${name} split ${pieces.length}: ${JSON.stringify(events)}`); break; }
          }
        }
        // A long line fed in many small pieces is one event (searched once, not from its start again with each piece).
        const long = 'data: ' + 'x'.repeat(2 * 1024 * 1024) + '\\n\\n';
        const longEvents = [];
        const longParser = new SSEParser((e) => longEvents.push(e.data.length));
        for (let i = 0; i < long.length; i += 1024) longParser.push(long.slice(i, i + 1024));
        if (JSON.stringify(longEvents) !== JSON.stringify([2 * 1024 * 1024])) failures.push(`long line: ${JSON.stringify(longEvents)}`);
        const judge = '```json\\n{"consensus":["a, [b]", "c \\\\"q\\\\""], "contradictions":[{"topic":"t","stances":[{"model":"m","stance":"s"}]}],' +
          '"partial_coverage":[], "unique_insights":[{"model":"m","insight":"i}"}], "blind_spots":["z"]}\\n```';
        const items = [];
        const scanner = new JudgeItemScanner((field, item) => items.push([field, item]));
        for (const ch of judge) scanner.push(ch);
        const expectedItems = JSON.stringify([["consensus", "a, [b]"], ["consensus", 'c "q"'],
          ["contradictions", { topic: "t", stances: [{ model: "m", stance: "s" }] }], ["unique_insights", { model: "m", insight: "i}" }], ["blind_spots", "z"]]);
        if (JSON.stringify(items) !== expectedItems) failures.push(`judge items: ${JSON.stringify(items)}`);
        const box = document.createElement('div');
        renderText(box, '<img src=x onerror=alert(1)> [click](javascript:alert(1)) <script>x</script>\\n\\n- [ok](https://example.com/a) and https://example.org/b.\\n\\n```\\n<b>code</b>\\n```');
        if (box.querySelector('img, script, b')) failures.push('markup from model text became elements');
        const hrefs = [...box.querySelectorAll('a')].map((a) => [a.href, a.rel, a.target]);
        if (JSON.stringify(hrefs) !== JSON.stringify([["https://example.com/a", "noopener noreferrer", "_blank"], ["https://example.org/b", "noopener noreferrer", "_blank"]]))
          failures.push(`links: ${JSON.stringify(hrefs)}`);
        if (!box.textContent.includes('<img src=x onerror=alert(1)>') || !box.querySelector('pre code')) failures.push('text lost: ' + box.textContent);
        // Headings lose only a closing sequence of hashes; a fence's one-word info is its language.
        renderText(box, '## Title ##\\n\\n# C#\\n\\n```js\\nx\\n```\\n\\n``` two words\\nnot code');
        const headings = [...box.querySelectorAll('.md-heading')].map((n) => n.textContent);
        if (JSON.stringify(headings) !== JSON.stringify(['Title', 'C#'])) failures.push(`headings: ${JSON.stringify(headings)}`);
        if (box.querySelectorAll('pre code').length !== 1 || box.querySelector('pre code').dataset.lang !== 'js') failures.push('fences: ' + box.innerHTML);
        // Hostile model text renders in time linear in its size (review 42: a heading of 3,000
        // spaces took 11.5 s, 20,000 brackets 0.5 s a redraw). The bound is 50 times what it takes.
        for (const [name, hostile] of [['heading', '# a' + ' '.repeat(3000) + 'b'], ['brackets', '['.repeat(20000)],
                                      ['fence', '```' + ' '.repeat(20000) + 'x'], ['backticks', '`'.repeat(20000) + 'a'],
                                      ['links', '[a]('.repeat(5000)], ['bold', '**a '.repeat(10000)],
                                      ['url punctuation', 'See http://a/' + '.'.repeat(60000) + 'b']]) {
          const started = performance.now();
          renderText(box, hostile);
          const took = performance.now() - started;
          if (took > 1000) failures.push(`${name}: ${Math.round(took)} ms`);
        }
        // A frame's redraw of hostile text as long as markdown is parsed stays within a frame's
        // budget (review 62E M1: 190 KB of "[a](" took 446 ms, prose of that size 2 ms).
        for (const [name, hostile] of [['open links', '[a]('.repeat(47500)], ['open http links', '[a](http://x'.repeat(15000)],
                                      ['parenthesised links', '[a](http://x/('.repeat(14000)]]) {
          const started = performance.now();
          renderText(box, hostile);
          const took = performance.now() - started;
          if (took > 200) failures.push(`${name}: ${Math.round(took)} ms for ${hostile.length} characters`);
        }
        // A URL with one level of parentheses is one link (Wikipedia's), its title kept.
        renderText(box, 'See [Foo](https://en.wikipedia.org/wiki/Foo_(bar) "The bar") now.');
        const wiki = box.querySelector('a');
        if (!wiki || wiki.href !== 'https://en.wikipedia.org/wiki/Foo_(bar)' || wiki.textContent !== 'Foo' || !box.textContent.endsWith(' now.'))
          failures.push('link with parentheses: ' + box.innerHTML);
        // An upper-case scheme and a bracketed IPv6 host are links too (review 63 #3).
        renderText(box, '[up](HTTPS://example.com/a) [v6](http://[2001:db8::1]:8080/p)');
        const others = [...box.querySelectorAll('a')].map((a) => [a.href, a.textContent]);
        if (JSON.stringify(others) !== JSON.stringify([["https://example.com/a", "up"], ["http://[2001:db8::1]:8080/p", "v6"]]))
          failures.push('links: ' + JSON.stringify(others));
        // A bare URL's trailing punctuation is the sentence's, stripped in linear time (review 46).
        renderText(box, 'See https://example.com/a).');
        const bare = box.querySelector('a');
        if (!bare || bare.textContent !== 'https://example.com/a' || !box.textContent.endsWith(').')) failures.push('bare url: ' + box.innerHTML);
        // Past the markdown limit, text is shown as it is.
        renderText(box, '# x\\n' + 'y'.repeat(200001));
        if (!box.querySelector('.plain-text') || box.querySelector('.md-heading')) failures.push('long text was parsed as markdown');
        // Past it, streamed text is appended in blocks, never redrawn whole (review 72C: an 8 MB
        // answer took 2.5 s a frame): the box shows exactly the text, however it came.
        const plain = document.createElement('div');
        plain.className = 'rich'; // as an answer's box is: its plain text keeps its line breaks
        document.body.append(plain); // laid out: innerText is the text as shown and copied
        let streamedText = '';
        for (let i = 0; i < 40; i++) { streamedText += ('line ' + i + ' \\u{1F600} ').repeat(700) + '\\n'; renderText(plain, streamedText); }
        streamedText += 'tail'; renderText(plain, streamedText);
        if (plain.innerText !== streamedText) failures.push('long streamed text differs from what came: ' + plain.innerText.length + ' vs ' + streamedText.length);
        plain.remove();
        if (plain.querySelectorAll('.plain-text').length < 10) failures.push('long streamed text is not in blocks');
        // Streamed text redraws only its unfinished tail: at every prefix, in pieces of any size,
        // the streamed box shows exactly what a fresh render of that prefix shows, and a block
        // closed by a blank line is never rebuilt (a link in it keeps the reader's pointer).
        const doc = '# Plan\\r\\n\\nFirst **bold** [link](https://example.com/a) and `code`.\\nSecond line.\\n\\n' +
          '- one\\n- two\\n  continued\\n\\n3. three\\n4. four\\n\\n> quoted\\n> more\\n\\n> another quote\\n\\n' +
          '```js\\nlet a = 1;\\n\\nlet b = 2;\\n```\\n\\nAfter the fence https://example.org/x.\\n\\n~~~\\nopen fence\\n\\nstill code';
        for (const step of [1, 2, 5, 13, 64]) {
          const streamed = document.createElement('div');
          const fresh = document.createElement('div');
          let firstBlock = null;
          for (let end = step; end < doc.length + step; end += step) {
            const prefix = doc.slice(0, Math.min(end, doc.length));
            renderText(streamed, prefix);
            renderText(fresh, '');  // from nothing: no state carried over
            renderText(fresh, prefix);
            if (streamed.innerHTML !== fresh.innerHTML) { failures.push(`step ${step} at ${prefix.length}: ${streamed.innerHTML} != ${fresh.innerHTML}`); break; }
            if (prefix.length > 12 && firstBlock === null) firstBlock = streamed.firstChild;
          }
          if (streamed.firstChild !== firstBlock) failures.push(`step ${step}: the closed heading was rebuilt`);
        }
        const quotes = document.createElement('div');
        renderText(quotes, '> a\\n> b\\n\\n> c');
        if (quotes.querySelectorAll('blockquote').length !== 2) failures.push('quotes: ' + quotes.innerHTML);
        return failures;
      })().then(done, (e) => done([String(e)]));
    """)
    check("modules: SSE parser, judge items, safe text", result == [], json.dumps(result))


def upcoming_event_checks(driver):
    """Events in orders a live run rarely produces (reasoning, cuts, validated judge items and
    their withdrawal, phases, estimates; quorum_checks sees them live) and an unknown one, fed to
    the page's own state and view: each shows as intended, the unknown one changes nothing. Also
    the model list with presets."""
    result = driver.execute_async_script("""
      const done = arguments[arguments.length - 1];
      (async () => {
        const { Run } = await import('/playground/run.js');
        const { TurnView } = await import('/playground/view.js');
        const { describeModels } = await import('/playground/api.js');
        const run = new Run('q', {});
        const view = new TurnView(run, () => {});
        const host = document.createElement('div');
        host.hidden = true;
        host.append(view.root);
        document.body.append(host);
        const ev = (name, data) => run.onEvent(name, data);
        ev('fusion.estimate', { type: 'fusion.estimate', t_ms: 1, cost_min: 0.001, cost_max: 0.004 });
        ev('fusion.tool.called', { t_ms: 5, arguments: '{}' });
        ev('fusion.phase', { t_ms: 5, phase: 'outer', status: 'completed', duration_ms: 5 });
        ev('fusion.member.started', { t_ms: 6, index: 0, model: 'a' });
        ev('fusion.member.started', { t_ms: 6, index: 1, model: 'b' });
        ev('fusion.member.reasoning', { t_ms: 7, index: 0, model: 'a', delta: 'thinking hard' });
        ev('fusion.member.delta', { t_ms: 8, index: 0, model: 'a', delta: 'Answer A' });
        ev('fusion.member.delta', { t_ms: 8, index: 1, model: 'b', delta: 'Answer B so far' });
        ev('fusion.member.completed', { t_ms: 20, index: 0, model: 'a', stats: { ttft_ms: 2, duration_ms: 14, completion_tokens: 10 } });
        ev('fusion.member.cut', { t_ms: 21, index: 1, model: 'b', reason: 'cut_for_latency', characters: 15 });
        ev('fusion.something.new', { t_ms: 22, whatever: true });
        ev('fusion.judge.started', { t_ms: 22, model: 'j', attempt: 1 });
        ev('fusion.judge.progress', { t_ms: 23, model: 'j', delta: '{"consensus":["read early",' });
        view.update();
        const early = [...view.root.querySelectorAll('.field-consensus li')].map((li) => [li.textContent, li.classList.contains('provisional')]);
        ev('fusion.judge.item', { t_ms: 24, field: 'consensus', item: 'validated' });
        ev('fusion.judge.item', { t_ms: 24, field: 'blind_spots', item: 'withdrawn' });
        ev('fusion.judge.item', { t_ms: 24, field: 'blind_spots', item: 'kept' });
        ev('fusion.judge.item.withdrawn', { t_ms: 25, field: 'blind_spots', index: 0 });
        view.update();
        const text = (sel) => [...view.root.querySelectorAll(sel)].map((n) => n.textContent);
        // Items of shapes no schema allows (a judge the gateway has not validated yet) are drawn
        // as they are; the rest of the view is still drawn (review 42: one threw on every frame).
        const odd = new Run('q', {});
        const oddView = new TurnView(odd, () => {});
        host.append(oddView.root);
        odd.onEvent('fusion.judge.started', { t_ms: 1, model: 'j', attempt: 1 });
        odd.onEvent('fusion.judge.progress', { t_ms: 2, model: 'j', delta: '{"partial_coverage":[{"point":"p","models":"Model A"}],"contradictions":[{"topic":7,"stances":[null,"x",{"model":1}]}],' });
        odd.onEvent('fusion.judge.item', { t_ms: 3, field: 'unique_insights', item: { model: null, insight: { deep: true } } });
        odd.onEvent('fusion.final', { t_ms: 4, model: 'o' });
        odd.onChunk({ choices: [{ index: 0, delta: { content: 'the answer' } }] });
        let threw = '';
        try { oddView.update(); } catch (e) { threw = String(e); }
        const oddOut = { threw, answer: oddView.root.querySelector('.answer-text')?.textContent === 'the answer',
                         insights: [...oddView.root.querySelectorAll('.field-unique_insights li')].map((n) => n.textContent) };
        // A judge that fails for good leaves nothing it was read to say.
        odd.onEvent('fusion.judge.failed', { t_ms: 5, reason: 'judge_schema_mismatch', message: 'no', will_retry: false });
        odd.onEvent('fusion.completed', { t_ms: 6, result: { status: 'ok', responses: [], analysis_failure: { reason: 'judge_schema_mismatch' } } });
        oddView.update();
        oddOut.afterFailure = oddView.root.querySelectorAll('.field-partial_coverage li, .field-contradictions li, .field-unique_insights li').length;
        // The stream breaks mid-panel: the member still writing was interrupted, not done, and says so
        // (review 72C L4: the panel read "done", the member "failed" with no reason).
        const broken = new Run('q', {});
        const brokenView = new TurnView(broken, () => {});
        host.append(brokenView.root);
        broken.onEvent('fusion.member.started', { t_ms: 1, index: 0, model: 'a' });
        broken.onEvent('fusion.member.started', { t_ms: 1, index: 1, model: 'b' });
        broken.onEvent('fusion.member.completed', { t_ms: 2, index: 0, model: 'a', stats: {} });
        broken.onEvent('fusion.member.delta', { t_ms: 3, index: 1, model: 'b', delta: 'half an' });
        broken.onEvent('fusion.judge.started', { t_ms: 4, model: 'j', attempt: 1 });
        broken.onEvent('fusion.judge.progress', { t_ms: 5, model: 'j', delta: '{"consensus":["half read",' });
        broken.fail({ message: 'network error' });
        brokenView.update();
        oddOut.broken = { panel: broken.phaseStates().panel, failure: brokenView.root.querySelectorAll('.member .failure')[1]?.textContent || '',
                          analysis: brokenView.root.querySelectorAll('.field-consensus li').length,
                          judgeFailure: broken.judge.attempts[0]?.failure?.reason || '' };
        const out = {
          early,
          consensus: [...view.root.querySelectorAll('.field-consensus li')].map((li) => [li.textContent, li.classList.contains('provisional')]),
          blind: text('.field-blind_spots li'),
          statuses: [...view.root.querySelectorAll('.member')].map((m) => m.dataset.status),
          badges: text('.member .badge'),
          reasoningShown: !view.root.querySelector('.member .reasoning').hidden,
          reasoning: view.root.querySelector('.member .reasoning').textContent,
          cutNote: view.root.querySelector('.member[data-status=cut] .failure')?.textContent || '',
          phaseDetail: view.root.querySelector('.phase[data-phase=outer] .phase-detail').textContent,
          timeline: [...view.root.querySelectorAll('.tl-row')].map((r) => r.dataset.status),
          estimate: view.root.querySelector('.totals').textContent,
          ignored: run.notes,
          odd: oddOut,
        };
        host.remove();
        const described = describeModels([{ id: 'fusion', object: 'model', fusion: { presets: { quality: ['p/a', 'p/b'] }, default_preset: 'quality' } },
                                          { id: 'openrouter/fusion' }, { id: 'p/a' }, { id: 'p/b', description: 'B' }]);
        const plain = describeModels([{ id: 'p/a' }]);
        out.models = [described, plain];
        return out;
      })().then(done, (e) => done({ error: String(e) + e.stack }));
    """)
    check("no error feeding future events", "error" not in result, result.get("error"))
    check("judge items read from the streaming JSON are provisional", result["early"] == [["read early", True]], result["early"])
    check("validated judge items replace them", result["consensus"] == [["validated", False]], result["consensus"])
    check("a withdrawn judge item disappears", result["blind"] == ["kept"], result["blind"])
    check("reasoning is shown, folded", result["reasoningShown"] and "thinking hard" in result["reasoning"], result["reasoning"])
    check("a member cut for latency says so", result["statuses"] == ["done", "cut"] and result["badges"][1] == "cut for latency"
          and "quorum" in result["cutNote"], result)
    check("phase durations are shown", result["phaseDetail"] == "5 ms", result["phaseDetail"])
    check("the timeline marks the cut", result["timeline"] == ["done", "done", "cut", "running"], result["timeline"])
    check("the cost estimate is shown", "Estimated cost$0.0010 – $0.0040" in result["estimate"], result["estimate"])
    check("unknown events are ignored", result["ignored"] == ["ignored event fusion.something.new"], result["ignored"])
    odd = result.get("odd", {})
    check("judge items of any shape are drawn, and the answer with them", odd.get("threw") == "" and odd.get("answer")
          and odd.get("insights") and '{"deep":true}' in odd["insights"][0], odd)
    check("a judge that failed leaves none of what was read from it", odd.get("afterFailure") == 0, odd)
    check("a panel the broken stream interrupted is failed, its member says why", odd.get("broken", {}).get("panel") == "failed"
          and "interrupted" in odd.get("broken", {}).get("failure", ""), odd.get("broken"))
    check("an interrupted judge leaves no analysis and says why", odd.get("broken", {}).get("analysis") == 0
          and odd.get("broken", {}).get("judgeFailure") == "interrupted", odd.get("broken"))
    described, plain = result["models"]
    check("presets from /v1/models", described == {"models": [{"id": "p/a", "description": ""}, {"id": "p/b", "description": "B"}],
                                                   "presets": {"quality": ["p/a", "p/b"]}, "defaultPreset": "quality"}, described)
    check("no presets listed: fall back to names", plain["presets"] is None and plain["defaultPreset"] is None, plain)


def deliberation_checks(driver, screenshot):
    """The research preset: three columns stream live, one searches and reads the simulated web;
    the analysis, the answer with citations, the timeline and the totals appear."""
    driver.find_element(By.CSS_SELECTOR, '.preset[data-preset="research"]').click()
    send(driver, "What do studies say about congestion pricing?")
    wait(driver, "a column streaming text while its member runs",
         lambda d: js(d, "return [...document.querySelectorAll('.member[data-status=running] .member-text')].some((n) => n.textContent.length > 0)"), 20)
    check("a panel column streams live", True)
    status = wait_turn_over(driver)
    check("the deliberation completes", status == "done", status)
    turn = last_turn(driver)
    members = turn.find_elements(By.CSS_SELECTOR, ".member")
    check("one column per panel member", len(members) == 3, len(members))
    for member in members:
        model = member.find_element(By.CSS_SELECTOR, ".member-model").text
        text = member.find_element(By.CSS_SELECTOR, ".member-text").text
        check(f"column {model} filled and done", member.get_attribute("data-status") == "done" and len(text) > 40, f"{member.get_attribute('data-status')} {text[:60]!r}")
        ttft = member.find_element(By.CSS_SELECTOR, ".metrics div:first-child dd").text
        check(f"column {model} shows its TTFT", re.match(r"^\d", ttft) is not None, ttft)
    web = turn.find_elements(By.CSS_SELECTOR, ".member .web")
    kinds = sorted({w.find_element(By.CSS_SELECTOR, ".web-kind").text.lower() for w in web})
    check("web tool activity shown (search and read)", kinds == ["read", "search"], kinds)
    counts = {f.get_attribute("data-field"): len(f.find_elements(By.CSS_SELECTOR, ".items > li"))
              for f in turn.find_elements(By.CSS_SELECTOR, ".field")}
    check("every analysis field has items", len(counts) == 5 and all(n > 0 for n in counts.values()), counts)
    stances = turn.find_elements(By.CSS_SELECTOR, ".field-contradictions .stances .chip")
    check("contradictions show each model's stance", len(stances) == 3, len(stances))
    answer = turn.find_element(By.CSS_SELECTOR, ".answer-text").text
    check("the final answer is visible", len(answer) > 100, answer[:80])
    citations = turn.find_elements(By.CSS_SELECTOR, ".citations a")
    check("citations are links", len(citations) >= 1 and all(
        a.get_attribute("href").startswith("http") and a.get_attribute("rel") == "noopener noreferrer" and a.get_attribute("target") == "_blank"
        for a in citations), [a.get_attribute("href") for a in citations])
    rows = turn.find_elements(By.CSS_SELECTOR, ".tl-row")
    roles = [r.get_attribute("data-role") for r in rows]
    # The page forces fusion: the outer model makes no first call, so it has no bar (review 62E L4).
    check("the timeline has a bar per call", roles == ["panel", "panel", "panel", "judge", "final"], roles)
    outer_phase = turn.find_elements(By.CSS_SELECTOR, "[data-phase='outer']")
    check("the skipped outer turn is shown as skipped", len(outer_phase) == 1 and outer_phase[0].get_attribute("data-state") == "skipped",
          [p.get_attribute("data-state") for p in outer_phase])
    widths = js(driver, "return [...arguments[0].querySelectorAll('.tl-row')].map((r) => r.querySelector('.tl-stream, .tl-wait').getBoundingClientRect().width)", turn)
    check("timeline bars are drawn", all(w > 0 for w in widths), widths)
    totals = turn.find_element(By.CSS_SELECTOR, ".totals").text
    check("totals show tokens, cost and time", "TOKENS" in totals.upper() and "$" in totals and "TIME" in totals.upper(), totals)
    if screenshot:
        save_page(driver, screenshot)


def save_page(driver, path, width=1280):
    """A screenshot of the whole page at `width`: the window is made as tall as the page."""
    size = driver.get_window_size()
    js(driver, "document.activeElement.blur(); window.scrollTo(0, 0)")
    driver.set_window_size(width, 800)  # short, so the page's height is its content's
    chrome = driver.get_window_size()["height"] - js(driver, "return window.innerHeight")
    driver.set_window_size(width, js(driver, "return document.documentElement.scrollHeight") + chrome)
    driver.save_screenshot(path)
    driver.set_window_size(size["width"], size["height"])
    print(f"     screenshot: {path}")


def failing_member_checks(driver):
    """A second turn (the conversation continues) with sim/error on the panel: that column says
    failed, the panel is marked degraded, the answer still comes."""
    preview = driver.find_element(By.ID, "request-preview").get_attribute("textContent")
    check("the next request carries the conversation", "2 earlier messages" in preview, preview[:200])
    set_panel(driver, ["sim/expert-1", "sim/error"])
    send(driver, "And what would you do first?")
    status = wait_turn_over(driver)
    check("a degraded deliberation still completes", status == "done", status)
    turn = last_turn(driver)
    failed = turn.find_element(By.CSS_SELECTOR, ".member[data-status=failed]")
    check("the failing member is shown failed",
          failed.find_element(By.CSS_SELECTOR, ".member-model").text == "sim/error"
          and failed.find_element(By.CSS_SELECTOR, ".badge").text.lower() == "failed"
          and "upstream_error" in failed.find_element(By.CSS_SELECTOR, ".failure").text,
          failed.text)
    banner = " ".join(b.text for b in turn.find_elements(By.CSS_SELECTOR, ".banner"))
    check("the degraded panel is said plainly", "Degraded panel: 1 of 2 answered" in banner, banner)
    check("its timeline bar is marked failed", len(turn.find_elements(By.CSS_SELECTOR, ".tl-row[data-status=failed]")) == 1)
    check("earlier turns fold away", "earlier" in driver.find_elements(By.CSS_SELECTOR, ".turn")[0].get_attribute("class"))


def quorum_checks(driver):
    """min_answers 2, grace_ms 0, one slow member: the gateway cuts it once two have answered,
    the page shows it cut, the analysis arrives item by item from the gateway, and the cost
    estimate (the simulator's models are priced in the embedded config) is shown."""
    driver.find_element(By.ID, "new-chat").click()
    set_panel(driver, ["sim/expert-1:pace_ms=2", "sim/expert-2:pace_ms=2", "sim/paced:pace_ms=100:deltas=400"])
    js(driver, "document.getElementById('advanced').open = true")
    for field, value in (("min-answers", "2"), ("grace-ms", "0")):
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    preview = driver.find_element(By.ID, "request-preview").get_attribute("textContent")
    check("the request carries min_answers and grace_ms", '"min_answers": 2' in preview and '"grace_ms": 0' in preview, preview[-300:])
    send(driver, "Is a quorum enough?")
    status = wait_turn_over(driver)
    check("a deliberation with a cut member completes", status == "done", status)
    turn = last_turn(driver)
    statuses = [m.get_attribute("data-status") for m in turn.find_elements(By.CSS_SELECTOR, ".member")]
    check("the slow member is shown cut", statuses == ["done", "done", "cut"], statuses)
    note = turn.find_element(By.CSS_SELECTOR, ".member[data-status=cut] .failure").text
    check("its column says why", "Cut for latency" in note, note)
    counts = {f.get_attribute("data-field"): len(f.find_elements(By.CSS_SELECTOR, ".items > li"))
              for f in turn.find_elements(By.CSS_SELECTOR, ".field")}
    check("the analysis has items", sum(counts.values()) > 0, counts)
    check("no neutral label reaches the page", "Response A" not in turn.text)
    totals = turn.find_element(By.CSS_SELECTOR, ".totals").text
    check("the timeline marks the cut", len(turn.find_elements(By.CSS_SELECTOR, ".tl-row[data-status=cut]")) == 1)
    for field in ("min-answers", "grace-ms"):
        driver.find_element(By.ID, field).clear()
    js(driver, "document.getElementById('advanced').open = false")
    return totals


def long_token_checks(driver):
    """A word of 4,000 characters with no space (a hash, base64) in the question, and echoed by a
    member (`sim/echo` answers with its request body, one unbroken JSON line): it wraps inside
    its box, and the page never scrolls sideways (review 116 #1: 92,000 px of it)."""
    driver.find_element(By.ID, "new-chat").click()
    set_panel(driver, ["sim/echo", "sim/expert-1"])
    send(driver, "Q" + "x" * 4000)
    status = wait_turn_over(driver)
    check("a deliberation on a long word completes", status == "done", status)
    overflow = js(driver, "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    check("a long word never widens the page", overflow <= 0, f"{overflow} px wider than the window")
    # The page's own labels are not broken mid-word (review 118 #3: "ANSWE/R" in the timeline).
    heights = js(driver, "return [...[...document.querySelectorAll('.turn')].pop().querySelectorAll('.tl-role')].map((n) => n.getBoundingClientRect().height)")
    check("timeline labels each on one line", len(heights) > 0 and max(heights) == min(heights), heights)
    spill = js(driver, "return [...[...document.querySelectorAll('.turn')].pop().querySelectorAll('.tl-role')].filter((n) => n.scrollWidth > n.clientWidth).map((n) => n.textContent)")
    check("timeline labels fit their box", spill == [], spill)


def cancel_checks(driver, gateway):
    """Stop mid-panel: the fetch is aborted, the gateway cancels every inner call."""
    driver.find_element(By.ID, "new-chat").click()
    set_panel(driver, ["sim/paced:pace_ms=100:deltas=400", "sim/expert-2:pace_ms=200"])
    send(driver, "Take your time.")
    wait(driver, "the panel to stream", lambda d: js(d, "return [...document.querySelectorAll('.turn:last-child .member-text')].some((n) => n.textContent.length > 0)"), 20)
    check("the gateway is streaming", (active_streams(gateway) or 0) >= 1)
    driver.find_element(By.ID, "stop").click()
    status = wait_turn_over(driver, 10)
    check("stop ends the turn as cancelled", status == "cancelled", status)
    turn = last_turn(driver)
    statuses = [m.get_attribute("data-status") for m in turn.find_elements(By.CSS_SELECTOR, ".member")]
    check("running columns show cancelled", statuses and all(s == "cancelled" for s in statuses), statuses)
    check("no stream left running in the gateway", eventually(lambda: active_streams(gateway) == 0), active_streams(gateway))
    generation = turn.find_element(By.CSS_SELECTOR, ".totals dd.mono").text
    record = {}

    def cancelled():
        nonlocal record
        try:
            record = json.loads(http_get(f"{gateway}/api/v1/generation?id={generation}"))["data"]
        except Exception:
            return False
        return record.get("cancelled") is True

    check("the generation record says cancelled", eventually(cancelled), record)


def generation_record_checks(driver):
    """The totals' generation record is fetched with the page's key (a link opened in a tab
    would carry none: a 401) and shown in the page as JSON text."""
    turn = last_turn(driver)
    generation = turn.find_element(By.CSS_SELECTOR, ".totals dd.mono").text
    box = turn.find_element(By.CSS_SELECTOR, "details.generation")
    summary = box.find_element(By.TAG_NAME, "summary")
    record_text = lambda: js(driver, "return arguments[0].querySelector('pre').textContent", box)
    summary.click()

    def shown():
        text = record_text()
        if text.startswith("Could not load"):  # filed a moment after the stream's end: open it again
            summary.click()
            summary.click()
            return False
        return text.startswith("{")

    wait(driver, "the generation record in the page", lambda d: shown(), 15, poll=0.1)
    record = json.loads(record_text())
    check("the generation record is fetched with the key and shown", record.get("id") == generation and record.get("status") == 200,
          record_text()[:200])
    check("the record is text, not markup", len(box.find_elements(By.CSS_SELECTOR, "pre *")) == 0)


def key_checks(driver, keyed_url, key):
    """With gateway keys the page asks for one, keeps it for the tab, and uses it."""
    open_page(driver, keyed_url)
    wait(driver, "the key dialog", lambda d: js(d, "return document.getElementById('key-dialog').open"), 15)
    check("the page asks for a key", True)
    driver.find_element(By.ID, "key-input").send_keys("wrong-key")
    driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    wait(driver, "the key dialog again after a wrong key", lambda d: js(d, "return document.getElementById('key-dialog').open"), 15)
    check("a refused key is asked again", True)
    # A key a header cannot carry is refused in the dialog, not left to fail every call; invisible
    # characters a paste brings are dropped (review 72C).
    driver.find_element(By.ID, "key-input").send_keys("bad key é")
    driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    check("a key a header cannot carry is refused in the dialog",
          js(driver, "return document.getElementById('key-dialog').open && document.getElementById('key-reason').textContent.includes('cannot carry')"))
    driver.find_element(By.ID, "key-input").clear()
    driver.find_element(By.ID, "key-input").send_keys("\u200b" + key)
    driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    wait_ready(driver)
    check("the key is kept in sessionStorage only", js(driver, "return sessionStorage.getItem('fusion-gateway.key')") == key
          and key not in driver.current_url and js(driver, "return localStorage.length") == 0)
    set_panel(driver, ["sim/expert-1:pace_ms=2", "sim/expert-2:pace_ms=2"])
    send(driver, "Is the key sent?")
    status = wait_turn_over(driver)
    check("a deliberation runs with the key", status == "done", status)
    generation_record_checks(driver)
    js(driver, "sessionStorage.setItem('fusion-gateway.key', 'revoked-key')")
    send(driver, "And with a revoked key?")
    wait(driver, "the key dialog after a refused request", lambda d: js(d, "return document.getElementById('key-dialog').open"), 15)
    driver.find_element(By.ID, "key-input").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    wait(driver, "the refused turn to be sent again", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".turn")) == 2
         and turn_status(d) in ("done", "failed", "cancelled"), 45, poll=0.1)
    check("a refused request asks again and is sent again", turn_status(driver) == "done", turn_status(driver))


def console_checks(allowed=()):
    severe = [e for e in console if e.get("level") == "SEVERE" and not any(a in e.get("message", "") for a in allowed)]
    check("no console errors", not severe, json.dumps(severe, indent=1))


def main():
    driver = make_driver()
    failure_shot = args.screenshot or os.path.join(tempfile.gettempdir(), "playground-check.png")
    try:
        open_page(driver, base + "/")
        wait_ready(driver)
        module_checks(driver)
        upcoming_event_checks(driver)
        deliberation_checks(driver, args.screenshot)
        failing_member_checks(driver)
        quorum_checks(driver)
        long_token_checks(driver)
        cancel_checks(driver, base)
        collect_console(driver)
        console_checks()
        if args.keyed_url:
            key_checks(driver, args.keyed_url.rstrip("/"), args.key)
            collect_console(driver)
            # The browser logs each 401 it was given; those are the point of this check.
            console_checks(allowed=("status of 401",))
    except (CheckFailed, TimeoutError) as error:
        try:
            collect_console(driver)
            driver.save_screenshot(failure_shot.replace(".png", "-failure.png"))
        except Exception:
            pass
        print(f"FAIL {error}")
        for entry in console:
            print(f"     console {entry.get('level')}: {entry.get('message')}")
        sys.exit(1)
    finally:
        signal.alarm(0)
        driver.quit()
    print("all checks passed")


main()
