// SMB Command's TypeScript SDK: typed clients over grpc-web (generated from proto/ into ./gen), and a small
// layer that signs in, keeps the tokens, refreshes them when the access token has expired, and maps every
// error to the platform's `{code, message}` table.

import {
  Code,
  ConnectError,
  createClient,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { AuthService } from "./gen/smb/auth/v1/auth_service_pb.js";
import type { TokenPair } from "./gen/smb/auth/v1/auth_pb.js";
import { ConnectorsService } from "./gen/smb/connectors/v1/connectors_service_pb.js";
import {
  ActionsService,
  OrchestratorService,
} from "./gen/smb/orchestrator/v1/orchestrator_service_pb.js";

export * from "./gen/smb/common/v1/common_pb.js";
export * from "./gen/smb/auth/v1/auth_pb.js";
export * from "./gen/smb/auth/v1/auth_service_pb.js";
export * from "./gen/smb/orchestrator/v1/orchestrator_pb.js";
export * from "./gen/smb/orchestrator/v1/orchestrator_service_pb.js";
export * from "./gen/smb/connectors/v1/connectors_pb.js";
export * from "./gen/smb/connectors/v1/connectors_service_pb.js";

/** The session's tokens, as the auth service issued them. */
export interface Tokens {
  accessToken: string;
  refreshToken: string;
  tenantId: string;
  userId: string;
}

/** Where the tokens are kept between calls (and, in a browser, between page loads). */
export interface TokenStore {
  get(): Tokens | null;
  set(tokens: Tokens | null): void;
}

/** Keeps the tokens in memory: a server-side script, a test. */
export class MemoryTokenStore implements TokenStore {
  private tokens: Tokens | null = null;
  get(): Tokens | null {
    return this.tokens;
  }
  set(tokens: Tokens | null): void {
    this.tokens = tokens;
  }
}

/** Keeps the tokens in `window.localStorage` under `key`, so that a reload stays signed in. */
export class LocalStorageTokenStore implements TokenStore {
  constructor(private readonly key = "smb.tokens") {}
  get(): Tokens | null {
    const raw = globalThis.localStorage?.getItem(this.key);
    if (!raw) return null;
    try {
      const t = JSON.parse(raw) as Tokens;
      return t.accessToken && t.refreshToken ? t : null;
    } catch {
      return null;
    }
  }
  set(tokens: Tokens | null): void {
    if (tokens) globalThis.localStorage?.setItem(this.key, JSON.stringify(tokens));
    else globalThis.localStorage?.removeItem(this.key);
  }
}

/** The platform's error codes: the same `code` the JSON routes return in `{"error": {"code", "message"}}`. */
export type ErrorCode =
  | "invalid_argument"
  | "unauthenticated"
  | "permission_denied"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "rate_limited"
  | "payload_too_large"
  | "unavailable"
  | "timeout"
  | "cancelled"
  | "internal";

const CODES: Partial<Record<Code, ErrorCode>> = {
  [Code.InvalidArgument]: "invalid_argument",
  [Code.Unauthenticated]: "unauthenticated",
  [Code.PermissionDenied]: "permission_denied",
  [Code.NotFound]: "not_found",
  [Code.AlreadyExists]: "already_exists",
  [Code.FailedPrecondition]: "failed_precondition",
  [Code.ResourceExhausted]: "rate_limited",
  [Code.OutOfRange]: "payload_too_large",
  [Code.Unavailable]: "unavailable",
  [Code.DeadlineExceeded]: "timeout",
  [Code.Canceled]: "cancelled",
};

/** An error from the platform: `code` from the table above, and the server's message as it was sent. */
export class SmbError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly cause?: unknown,
  ) {
    super(message);
    this.name = "SmbError";
  }

  /** `{code, message}`, as the JSON routes write it. */
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** Any error a call can throw, as an {@link SmbError}. A network failure is `unavailable`. */
export function toSmbError(e: unknown): SmbError {
  if (e instanceof SmbError) return e;
  if (e instanceof ConnectError) {
    return new SmbError(CODES[e.code] ?? "internal", e.rawMessage || e.message, e);
  }
  if (e instanceof TypeError) {
    // fetch rejects with a TypeError when the server cannot be reached.
    return new SmbError("unavailable", `the server could not be reached: ${e.message}`, e);
  }
  return new SmbError("internal", e instanceof Error ? e.message : String(e), e);
}

export interface SmbClientOptions {
  /** The gateway's address, e.g. `http://127.0.0.1:8080` (in the web app: the page's own origin). */
  baseUrl: string;
  /** Where tokens live; in memory unless given. */
  tokens?: TokenStore;
  /** A custom fetch (tests, instrumentation). */
  fetch?: typeof globalThis.fetch;
}

function fromPair(p: TokenPair): Tokens {
  return {
    accessToken: p.accessToken,
    refreshToken: p.refreshToken,
    tenantId: p.tenantId,
    userId: p.userId,
  };
}

/**
 * The client with every method's failure as an {@link SmbError}: a unary call's rejection, and a server
 * stream's error while it is read. (An interceptor cannot do this: the client turns whatever an interceptor
 * throws back into a `ConnectError`.)
 */
function mapErrors<T extends object>(client: T): T {
  return new Proxy(client, {
    get(target, prop, receiver) {
      const f: unknown = Reflect.get(target, prop, receiver);
      if (typeof f !== "function") return f;
      return (...args: unknown[]) => {
        const r: unknown = f.apply(target, args);
        if (r instanceof Promise) {
          return r.catch((e: unknown) => {
            throw toSmbError(e);
          });
        }
        if (r !== null && typeof r === "object" && Symbol.asyncIterator in r) {
          const stream = r as AsyncIterable<unknown>;
          return (async function* () {
            try {
              yield* stream;
            } catch (e) {
              throw toSmbError(e);
            }
          })();
        }
        return r;
      };
    },
  });
}

const AUTH_FREE = new Set(["Signup", "Login", "Refresh"]);

/**
 * One client for every service. Calls carry the access token; a call refused as `unauthenticated` is
 * retried once after refreshing the tokens (a second refusal signs out). Every method throws
 * {@link SmbError}.
 */
export class SmbClient {
  readonly auth: Client<typeof AuthService>;
  readonly orchestrator: Client<typeof OrchestratorService>;
  readonly actions: Client<typeof ActionsService>;
  readonly connectors: Client<typeof ConnectorsService>;
  readonly tokens: TokenStore;
  private readonly plain: Client<typeof AuthService>;
  private refreshing: Promise<boolean> | null = null;

  constructor(options: SmbClientOptions) {
    this.tokens = options.tokens ?? new MemoryTokenStore();
    const transport = (interceptors: Interceptor[]): Transport =>
      createGrpcWebTransport({
        baseUrl: options.baseUrl,
        fetch: options.fetch,
        interceptors,
      });
    const bearer: Interceptor = (next) => async (req) => {
      const t = this.tokens.get();
      if (t && !AUTH_FREE.has(req.method.name)) {
        req.header.set("authorization", `Bearer ${t.accessToken}`);
      }
      try {
        return await next(req);
      } catch (e) {
        const expired =
          e instanceof ConnectError &&
          e.code === Code.Unauthenticated &&
          !AUTH_FREE.has(req.method.name) &&
          t !== null;
        if (!expired || !(await this.refresh())) throw e;
        req.header.set("authorization", `Bearer ${this.tokens.get()?.accessToken ?? ""}`);
        return await next(req);
      }
    };
    const authed = transport([bearer]);
    this.plain = mapErrors(createClient(AuthService, transport([])));
    this.auth = mapErrors(createClient(AuthService, authed));
    this.orchestrator = mapErrors(createClient(OrchestratorService, authed));
    this.actions = mapErrors(createClient(ActionsService, authed));
    this.connectors = mapErrors(createClient(ConnectorsService, authed));
  }

  /** Whether tokens are held (they may still have expired; the next call refreshes them). */
  get signedIn(): boolean {
    return this.tokens.get() !== null;
  }

  /** Creates a business and its owner, then signs in as the owner. */
  async signup(req: {
    businessName: string;
    email: string;
    password: string;
    timezone: string;
    currency?: string;
  }): Promise<Tokens> {
    await this.plain.signup({
      tenantName: req.businessName,
      email: req.email,
      password: req.password,
      timezone: req.timezone,
      currency: req.currency ?? "USD",
    });
    return this.login(req.email, req.password);
  }

  /** Signs in and keeps the tokens. */
  async login(email: string, password: string): Promise<Tokens> {
    const pair = await this.plain.login({ email, password });
    const t = fromPair(pair);
    this.tokens.set(t);
    return t;
  }

  /** Trades the refresh token for new tokens; `false` (and signed out) when the session is over. */
  async refresh(): Promise<boolean> {
    // Concurrent calls that all found the token expired share one refresh.
    this.refreshing ??= (async () => {
      const t = this.tokens.get();
      if (!t) return false;
      try {
        this.tokens.set(fromPair(await this.plain.refresh({ refreshToken: t.refreshToken })));
        return true;
      } catch {
        this.tokens.set(null);
        return false;
      }
    })().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  /** Ends the session on the server (best effort) and forgets the tokens. */
  async logout(): Promise<void> {
    if (!this.tokens.get()) return;
    try {
      await this.auth.logout({});
    } catch {
      // The session may be gone already; the tokens are forgotten either way.
    } finally {
      this.tokens.set(null);
    }
  }
}
