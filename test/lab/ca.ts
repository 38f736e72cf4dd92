import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * A throwaway certificate authority for lab TLS servers, driven by the openssl CLI.
 * Leaves are issued with `openssl ca` (not `x509 -req`) because only `ca` takes explicit
 * -startdate/-enddate on OpenSSL 3.0, which an already-expired certificate needs.
 */

const run = promisify(execFile);

export type KeyType = 'ec' | 'rsa';

export interface IssueOptions {
  /** IP addresses for subjectAltName (iPAddress entries). */
  ips?: string[];
  /** Validity from now; default 30. */
  days?: number;
  /** Valid from 10 days ago to 1 day ago. */
  expired?: boolean;
  /** Valid from 1 day to 30 days in the future. */
  notYetValid?: boolean;
  keyType?: KeyType;
}

export interface IssuedCert {
  certPath: string;
  keyPath: string;
  /** Certificate PEM (leaf only). */
  certPem: string;
  keyPem: string;
}

export interface LabCa {
  dir: string;
  caCertPath: string;
  caKeyPath: string;
  caCertPem: string;
  issue(names: string[], opts?: IssueOptions): Promise<IssuedCert>;
  /** Removes every file of this CA. */
  destroy(): Promise<void>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd, timeout: 30_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0]} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}

function keyArgs(type: KeyType): string[] {
  // P-256 keys are generated in milliseconds; RSA only when a test needs an RSA chain.
  return type === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048'];
}

/** openssl ca wants YYYYMMDDHHMMSSZ (GeneralizedTime, RFC 5280 §4.1.2.5.2). */
function asn1Time(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').replace(/\.\d{3}Z$/, 'Z');
}

const DAY_MS = 86_400_000;
const DNS_NAME = /^(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?$/;

/**
 * Creates a CA in `dir` (a fresh temp dir when omitted; pass `lab.tmpDir` to have the lab's
 * destroy() remove it). Files: ca.crt, ca.key, and one <serial>-<name>.{crt,key} per issue().
 */
export async function createLabCa(dir?: string, opts: { name?: string; keyType?: KeyType } = {}): Promise<LabCa> {
  const root = dir ? join(dir, `ca-${randomBytes(4).toString('hex')}`) : await mkdtemp(join(tmpdir(), 'callprobe-ca-'));
  await mkdir(join(root, 'issued'), { recursive: true });
  const caCertPath = join(root, 'ca.crt');
  const caKeyPath = join(root, 'ca.key');
  const caName = opts.name ?? `callprobe lab CA ${randomBytes(3).toString('hex')}`;
  if (!/^[\w .-]{1,64}$/.test(caName)) throw new Error(`CA name must be plain text: ${caName}`);

  await writeFile(
    join(root, 'ca.cnf'),
    [
      '[ req ]',
      'distinguished_name = dn',
      'prompt = no',
      'x509_extensions = v3_ca',
      '[ dn ]',
      `CN = ${caName}`,
      '[ v3_ca ]',
      'basicConstraints = critical, CA:TRUE',
      'keyUsage = critical, keyCertSign, cRLSign',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid:always',
      '[ ca ]',
      'default_ca = lab_ca',
      '[ lab_ca ]',
      `database = ${join(root, 'index.txt')}`,
      `serial = ${join(root, 'serial')}`,
      `new_certs_dir = ${join(root, 'issued')}`,
      `certificate = ${caCertPath}`,
      `private_key = ${caKeyPath}`,
      'default_md = sha256',
      'policy = policy_any',
      'unique_subject = no',
      'copy_extensions = none',
      'email_in_dn = no',
      '[ policy_any ]',
      'commonName = supplied',
      '',
    ].join('\n'),
  );
  await writeFile(join(root, 'index.txt'), '');
  // A random first serial: two CAs' leaves never share an issuer+serial pair by accident.
  await writeFile(join(root, 'serial'), `${(0x10 + (randomBytes(1)[0]! & 0x6f)).toString(16)}${randomBytes(7).toString('hex')}\n`);
  await writeFile(join(root, 'req.cnf'), '[ req ]\ndistinguished_name = dn\n[ dn ]\n');

  await openssl(
    ['req', '-x509', ...keyArgs(opts.keyType ?? 'ec'), '-nodes', '-config', 'ca.cnf', '-days', '3650', '-keyout', caKeyPath, '-out', caCertPath],
    root,
  );
  const caCertPem = await readFile(caCertPath, 'utf8');

  let queue: Promise<unknown> = Promise.resolve();
  let seq = 0;

  async function issueNow(names: string[], o: IssueOptions): Promise<IssuedCert> {
    const ips = o.ips ?? [];
    for (const n of names) if (!DNS_NAME.test(n)) throw new Error(`not a DNS name: ${n}`);
    for (const a of ips) if (isIP(a) === 0) throw new Error(`not an IP address: ${a}`);
    const first = names[0] ?? ips[0];
    if (first === undefined) throw new Error('a certificate needs at least one name or IP');

    const base = join(root, `leaf${seq++}-${first.replace(/[^\w.-]/g, '_')}`);
    const [certPath, keyPath, csrPath, extPath] = ['.crt', '.key', '.csr', '.ext'].map((s) => base + s) as [string, string, string, string];
    const now = Date.now();
    const [from, to] = o.expired
      ? [now - 10 * DAY_MS, now - DAY_MS]
      : o.notYetValid
        ? [now + DAY_MS, now + 30 * DAY_MS]
        : [now - 3_600_000, now + (o.days ?? 30) * DAY_MS]; // an hour back: a verifier whose clock lags a little still accepts it
    const san = [...names.map((n) => `DNS:${n}`), ...ips.map((a) => `IP:${a}`)].join(', ');
    await writeFile(
      extPath,
      [
        '[ leaf ]',
        'basicConstraints = critical, CA:FALSE',
        `keyUsage = critical, digitalSignature${o.keyType === 'rsa' ? ', keyEncipherment' : ''}`,
        'extendedKeyUsage = serverAuth, clientAuth',
        `subjectAltName = ${san}`,
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid',
        '',
      ].join('\n'),
    );
    await openssl(['req', '-new', ...keyArgs(o.keyType ?? 'ec'), '-nodes', '-config', 'req.cnf', '-subj', `/CN=${first}`, '-keyout', keyPath, '-out', csrPath], root);
    await openssl(
      [
        'ca', '-batch', '-notext', '-config', 'ca.cnf', '-in', csrPath, '-out', certPath,
        '-extfile', extPath, '-extensions', 'leaf', '-startdate', asn1Time(new Date(from)), '-enddate', asn1Time(new Date(to)),
      ],
      root,
    );
    return { certPath, keyPath, certPem: await readFile(certPath, 'utf8'), keyPem: await readFile(keyPath, 'utf8') };
  }

  return {
    dir: root,
    caCertPath,
    caKeyPath,
    caCertPem,
    issue(names: string[], o: IssueOptions = {}): Promise<IssuedCert> {
      // `openssl ca` rewrites index.txt and serial: one issue at a time per CA.
      const next = queue.then(() => issueNow(names, o));
      queue = next.catch(() => {});
      return next;
    },
    async destroy(): Promise<void> {
      await rm(root, { recursive: true, force: true });
    },
  };
}
