// A ten-line agent for the reference worker's `agent` jobs: the official OpenAI SDK, which reads
// OPENAI_BASE_URL and OPENAI_API_KEY (the gateway and a token for this job) from the worker.
import OpenAI from 'openai';

const input = JSON.parse((await new Response(process.stdin).text()) || 'null');
const answer = await new OpenAI().chat.completions.create({
  model: input?.model ?? 'gpt-4o-mini',
  messages: [{ role: 'user', content: String(input?.prompt ?? 'Say hello') }],
});
process.stdout.write(JSON.stringify({ answer: answer.choices[0].message.content, usage: answer.usage }));
