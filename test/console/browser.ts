import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Readable, Writable } from 'node:stream';

/** Debian's chromium; `.ci/run` installs it when missing. */
export const CHROMIUM = process.env.CYNODE_CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--remote-debugging-pipe',
  '--window-size=1280,900',
];

type Message = { id?: number; method?: string; params?: any; result?: any; error?: { message: string }; sessionId?: string };

/** A request the page made, as the browser saw it. */
export interface SeenRequest {
  url: string;
  type: string;
}

/**
 * A headless Chromium driven over the DevTools protocol on a pipe (no port, no download):
 * the few page operations the console tests need.
 */
export interface Browser {
  /** A page in a fresh browser context (its own cookies). */
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

/** One tab. Selectors are CSS; waits poll in the page until their condition holds. */
export interface Page {
  goto(url: string): Promise<void>;
  evaluate<T>(expression: string): Promise<T>;
  /** Waits until `expression` is truthy in the page; returns its value. */
  waitFor<T>(expression: string, timeoutMs?: number): Promise<T>;
  /** Waits until an element matching `selector` contains `text`. */
  waitForText(selector: string, text: string, timeoutMs?: number): Promise<void>;
  click(selector: string): Promise<void>;
  fill(selector: string, value: string): Promise<void>;
  /** Presses a key (`Tab`, `Enter`, `Escape`) as real keyboard input. */
  press(key: 'Tab' | 'Enter' | 'Escape', shift?: boolean): Promise<void>;
  setFiles(selector: string, files: string[]): Promise<void>;
  screenshot(path: string): Promise<void>;
  /** Every request the page made so far. */
  requests: SeenRequest[];
}

const KEYS = { Tab: { code: 'Tab', keyCode: 9 }, Enter: { code: 'Enter', keyCode: 13 }, Escape: { code: 'Escape', keyCode: 27 } };

/** Starts chromium with the pipe transport. */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  const proc = spawn(CHROMIUM, [...FLAGS, 'about:blank'], { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });
  const cdp = connect(proc);
  await cdp.send('Target.setDiscoverTargets', { discover: false });
  return {
    async newPage() {
      const { browserContextId } = await cdp.send('Target.createBrowserContext', {});
      const { targetId } = await cdp.send('Target.createTarget', { url: 'about:blank', browserContextId });
      const { sessionId } = await cdp.send('Target.attachToTarget', { targetId, flatten: true });
      return openPage(cdp, sessionId as string);
    },
    async close() {
      await cdp.send('Browser.close', {}).catch(() => undefined);
      await new Promise<void>((resolve) => (proc.exitCode !== null ? resolve() : proc.once('exit', () => resolve())));
    },
  };
}

interface Connection {
  send(method: string, params: object, sessionId?: string): Promise<any>;
  on(listener: (message: Message) => void): void;
}

function connect(proc: ChildProcess): Connection {
  const toBrowser = proc.stdio[3] as Writable;
  const fromBrowser = proc.stdio[4] as Readable;
  const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  const listeners: ((m: Message) => void)[] = [];
  let next = 0;
  let buffer = '';
  fromBrowser.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('utf8');
    let end: number;
    while ((end = buffer.indexOf('\0')) >= 0) {
      const message = JSON.parse(buffer.slice(0, end)) as Message;
      buffer = buffer.slice(end + 1);
      const waiter = message.id === undefined ? undefined : pending.get(message.id);
      if (waiter) {
        pending.delete(message.id!);
        if (message.error) waiter.reject(new Error(message.error.message));
        else waiter.resolve(message.result);
      } else listeners.forEach((l) => l(message));
    }
  });
  proc.once('exit', () => pending.forEach((w) => w.reject(new Error('chromium exited'))));
  return {
    send(method, params, sessionId) {
      const id = ++next;
      toBrowser.write(JSON.stringify({ id, method, params, ...(sessionId && { sessionId }) }) + '\0');
      return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
    },
    on: (listener) => listeners.push(listener),
  };
}

async function openPage(cdp: Connection, sessionId: string): Promise<Page> {
  const send = (method: string, params: object = {}) => cdp.send(method, params, sessionId);
  const requests: SeenRequest[] = [];
  const loads: (() => void)[] = [];
  cdp.on((m) => {
    if (m.sessionId !== sessionId) return;
    if (m.method === 'Network.requestWillBeSent') requests.push({ url: m.params.request.url, type: m.params.type ?? 'Other' });
    if (m.method === 'Page.loadEventFired') loads.splice(0).forEach((done) => done());
  });
  await Promise.all([send('Page.enable'), send('Runtime.enable'), send('Network.enable'), send('DOM.enable')]);
  const evaluate = async <T>(expression: string): Promise<T> => {
    const answer = await send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true });
    if (answer.exceptionDetails)
      throw new Error(`in the page: ${answer.exceptionDetails.exception?.description ?? answer.exceptionDetails.text}`);
    return answer.result.value as T;
  };
  const waitFor = async <T>(expression: string, timeoutMs = 5000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await evaluate<T>(expression).catch(() => undefined);
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for: ${expression}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const q = (selector: string) => `document.querySelector(${JSON.stringify(selector)})`;
  return {
    requests,
    async goto(url) {
      let timer: NodeJS.Timeout | undefined;
      const loaded = new Promise<void>((resolve, reject) => {
        loads.push(resolve);
        timer = setTimeout(() => reject(new Error(`${url} did not load in 10 s`)), 10_000);
      });
      const { loaderId, errorText } = await send('Page.navigate', { url });
      if (errorText) throw new Error(`${url}: ${errorText}`);
      // A change of the fragment only is a same-document navigation: no load event follows.
      if (loaderId) await loaded;
      clearTimeout(timer);
      loaded.catch(() => undefined);
    },
    evaluate,
    waitFor,
    async waitForText(selector, text, timeoutMs) {
      const all = `[...document.querySelectorAll(${JSON.stringify(selector)})]`;
      await waitFor(`${all}.some((e) => e.textContent.includes(${JSON.stringify(text)}))`, timeoutMs);
    },
    async click(selector) {
      await waitFor(`${q(selector)} !== null`);
      await evaluate(`${q(selector)}.click()`);
    },
    async fill(selector, value) {
      await waitFor(`${q(selector)} !== null`);
      await evaluate(
        `(() => { const e = ${q(selector)}; e.focus(); e.value = ${JSON.stringify(value)}; e.dispatchEvent(new Event('input', { bubbles: true })); })()`,
      );
    },
    async press(key, shift = false) {
      const k = KEYS[key];
      const base = { key, code: k.code, windowsVirtualKeyCode: k.keyCode, modifiers: shift ? 8 : 0 };
      await send('Input.dispatchKeyEvent', { type: 'keyDown', ...base, ...(key === 'Enter' && { text: '\r' }) });
      await send('Input.dispatchKeyEvent', { type: 'keyUp', ...base });
    },
    async setFiles(selector, files) {
      const { root } = await send('DOM.getDocument', { depth: 0 });
      const { nodeId } = await send('DOM.querySelector', { nodeId: root.nodeId, selector });
      await send('DOM.setFileInputFiles', { nodeId, files });
    },
    async screenshot(path) {
      const { data } = await send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true });
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, Buffer.from(data as string, 'base64'));
    },
  };
}
