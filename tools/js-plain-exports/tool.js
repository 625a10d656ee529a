// A JavaScript component as Wassette hosts them: the world's exported
// functions are its tools, no Stockade SDK. `fetch` goes through the host's
// egress policy.

export function count(text) {
  const words = text.split(/\s+/).filter((w) => w.length > 0).length;
  const lines = text.length === 0 ? 0 : text.split('\n').length;
  return { characters: [...text].length, words, lines };
}

export async function fetchText(url, maxChars) {
  let response;
  try {
    response = await fetch(url);
  } catch (err) {
    // A result's error case: the host shows it as an error result.
    throw `fetching ${url} failed: ${err.message}`;
  }
  const body = await response.text();
  return body.slice(0, maxChars ?? 1000);
}
