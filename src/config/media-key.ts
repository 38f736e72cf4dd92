/**
 * The shared media key, as researchers write it in the reflector's config and volunteers in
 * theirs: 64 or more hex digits (`openssl rand -hex 32`), i.e. at least the 32 bytes that
 * RFC 2104 §3 asks of an HMAC-SHA256 key (MIN_KEY_LENGTH). Hex, because a key typed or pasted
 * as text must not lose bytes to an encoding.
 *
 * The key is a secret: nothing logs it, records it or puts it in evidence.
 */
import { z } from 'zod';
import { MIN_KEY_LENGTH } from '../protocol/media-packet.js';

export const mediaKeySchema = z
  .string()
  .regex(
    new RegExp(`^(?:[0-9a-fA-F]{2}){${MIN_KEY_LENGTH},}$`),
    `must be at least ${2 * MIN_KEY_LENGTH} hex digits (${MIN_KEY_LENGTH} bytes, e.g. from "openssl rand -hex ${MIN_KEY_LENGTH}")`,
  );

export function parseMediaKey(hex: string): Buffer {
  return Buffer.from(mediaKeySchema.parse(hex), 'hex');
}
