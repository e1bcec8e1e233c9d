/**
 * `orrery tokens`: bearer tokens for a router with `router.auth` — make a new one (the token for
 * the client, the entry for the tokens file) or hash an existing one, so that plaintext tokens
 * are never stored on the router's side.
 */
import fs from 'node:fs';
import { InvalidArgumentError as BadOption, type Command } from 'commander';
import { stringify as toYaml } from 'yaml';
import { InvalidArgumentError } from '../common/errors.js';
import { RIGHTS, type Right } from '../router/grpc-rights.js';
import { hashToken, newToken } from '../router/token-file.js';

const rightsList = (v: string): Right[] => {
  const rights = v.split(',').map((r) => r.trim()).filter(Boolean);
  for (const r of rights) if (!RIGHTS.includes(r as Right)) throw new BadOption(`unknown right "${r}" (known: ${RIGHTS.join(', ')})`);
  if (rights.length === 0) throw new BadOption(`at least one right (${RIGHTS.join(', ')})`);
  return rights as Right[];
};

/** Reads all of stdin (the token to hash), for `tokens hash` without --token-file. */
function readStdin(): string {
  return fs.readFileSync(0, 'utf8');
}

export function registerTokensCommand(program: Command): void {
  const tokens = program
    .command('tokens')
    .description('Bearer tokens for the router\'s gRPC port (router.auth.tokens_file): make one, or hash one.')
    .addHelpText('after', `
The router stores only the SHA-256 of each token, with a name (in logs and the metric label
client of orrery_grpc_client_calls_total) and rights:
  generate     Generate, GenerateStream
  jobs.read    GetJob, WatchJob, ListJobs, ListJobItems
  jobs         the job calls above and SubmitJob, AddJobItems, CancelJob, RetryJob
  reflection   server reflection (grpcurl list/describe)
  admin        everything
Any valid token may call ListModels; grpc.health.v1 needs none. docs/security-grpc.md has more.

Examples:
  orrery tokens new --name web-frontend --rights generate --out web-frontend.token >> tokens.yaml
  orrery tokens hash --token-file web-frontend.token`);

  tokens
    .command('new')
    .description('Make a random token: writes it to --out (mode 0600) and prints the tokens file entry (name, sha256, rights) on stdout.')
    .requiredOption('--name <name>', 'the client\'s name, e.g. web-frontend')
    .requiredOption('--rights <list>', `comma-separated rights: ${RIGHTS.join(', ')}`, rightsList)
    .requiredOption('--out <file>', 'where the token goes (for the client\'s --token-file); must not exist')
    .action((o: { name: string; rights: Right[]; out: string }) => {
      const token = newToken();
      try {
        fs.writeFileSync(o.out, `${token}\n`, { mode: 0o600, flag: 'wx' });
      } catch (err) {
        throw new InvalidArgumentError('--out', `cannot create ${o.out}: ${(err as Error).message}`);
      }
      process.stdout.write(toYaml([{ name: o.name, sha256: hashToken(token), rights: o.rights }], { flow: false }).replace(/^/gm, '  '));
      process.stderr.write(`orrery: token for ${o.name} written to ${o.out}; add the entry above under tokens: in the router's tokens file\n`);
    });

  tokens
    .command('hash')
    .description('Print the SHA-256 of a token (from --token-file, else stdin), as the tokens file stores it.')
    .option('--token-file <file>', 'file holding the token')
    .action((o: { tokenFile?: string }) => {
      let text: string;
      try {
        text = o.tokenFile ? fs.readFileSync(o.tokenFile, 'utf8') : readStdin();
      } catch (err) {
        throw new InvalidArgumentError('--token-file', `cannot read ${o.tokenFile ?? 'stdin'}: ${(err as Error).message}`);
      }
      const token = text.trim();
      if (!/^\S+$/.test(token)) throw new InvalidArgumentError(o.tokenFile ? '--token-file' : 'stdin', 'must hold one token (no spaces)');
      process.stdout.write(`${hashToken(token)}\n`);
    });
}
