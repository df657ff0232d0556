/**
 * Test support: real gRPC servers and clients (@grpc/grpc-js). The test service's messages are
 * JSON rather than protobuf: gRPC frames whatever bytes a codec makes, and the proxy never looks
 * inside a message, so the calls on the wire are gRPC's own either way.
 */
import { Effect, type Scope } from "effect"
import * as grpc from "@grpc/grpc-js"

export type Message = Record<string, unknown>

const codec = {
  serialize: (value: Message): Buffer => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer): Message => JSON.parse(bytes.toString()) as Message
}

const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
  path: `/test.Echo/${name}`,
  requestStream,
  responseStream,
  requestSerialize: codec.serialize,
  requestDeserialize: codec.deserialize,
  responseSerialize: codec.serialize,
  responseDeserialize: codec.deserialize
})

/** test.Echo: one method of each kind gRPC has. */
export const echoService = {
  unary: method("Unary", false, false),
  serverStream: method("ServerStream", false, true),
  clientStream: method("ClientStream", true, false),
  bidi: method("Bidi", true, true)
} satisfies grpc.ServiceDefinition

export interface EchoHandlers {
  readonly unary?: grpc.handleUnaryCall<Message, Message>
  readonly serverStream?: grpc.handleServerStreamingCall<Message, Message>
  readonly clientStream?: grpc.handleClientStreamingCall<Message, Message>
  readonly bidi?: grpc.handleBidiStreamingCall<Message, Message>
}

const unimplemented = (_call: unknown, callback?: grpc.sendUnaryData<Message>) =>
  callback?.({ code: grpc.status.UNIMPLEMENTED, details: "not in this test" })

/** A grpc-js server with test.Echo on loopback (h2c, or TLS with `tls`), for the life of the scope. */
export const startGrpcServer = (
  handlers: EchoHandlers,
  tls?: { readonly cert: string; readonly key: string },
  setup?: (server: grpc.Server) => void
): Effect.Effect<{ readonly port: number; readonly url: string; readonly server: grpc.Server }, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<{ readonly port: number; readonly url: string; readonly server: grpc.Server }, Error>((resume) => {
      const server = new grpc.Server()
      server.addService(echoService, {
        unary: handlers.unary ?? unimplemented,
        serverStream: handlers.serverStream ?? ((call: grpc.ServerWritableStream<Message, Message>) => call.emit("error", { code: grpc.status.UNIMPLEMENTED })),
        clientStream: handlers.clientStream ?? unimplemented,
        bidi: handlers.bidi ?? ((call: grpc.ServerDuplexStream<Message, Message>) => call.emit("error", { code: grpc.status.UNIMPLEMENTED }))
      })
      setup?.(server)
      const credentials = tls === undefined
        ? grpc.ServerCredentials.createInsecure()
        : grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(tls.cert), private_key: Buffer.from(tls.key) }])
      server.bindAsync("127.0.0.1:0", credentials, (error, port) => {
        if (error !== null) resume(Effect.fail(error))
        else resume(Effect.succeed({ port, url: `${tls === undefined ? "http" : "https"}://127.0.0.1:${port}`, server }))
      })
    }),
    ({ server }) => Effect.sync(() => server.forceShutdown())
  )

export type EchoClient = grpc.Client & {
  unary(request: Message, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<Message>): grpc.ClientUnaryCall
  serverStream(request: Message, metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<Message>
  clientStream(metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<Message>): grpc.ClientWritableStream<Message>
  bidi(metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<Message, Message>
}

const EchoClientConstructor = grpc.makeGenericClientConstructor(echoService, "Echo")

/** A test.Echo client to the gateway at `port` (h2c, or TLS trusting `ca` for `servername`). */
export const grpcClient = (port: number, tls?: { readonly ca: string; readonly servername: string }): Effect.Effect<EchoClient, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const credentials = tls === undefined ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(Buffer.from(tls.ca))
      const options = tls === undefined ? {} : { "grpc.ssl_target_name_override": tls.servername, "grpc.default_authority": tls.servername }
      return new EchoClientConstructor(`127.0.0.1:${port}`, credentials, options) as unknown as EchoClient
    }),
    (client) => Effect.sync(() => client.close())
  )

/** How a call ended, as the client saw it: its status and what came with it. */
export interface Outcome<A> {
  readonly code: grpc.status
  readonly details: string
  readonly value: A | undefined
  /** The server's initial metadata (response headers). */
  readonly headers: grpc.Metadata | undefined
  /** The trailing metadata (trailers). */
  readonly trailers: grpc.Metadata | undefined
}

const endOf = <A>(error: grpc.ServiceError | null, value: A | undefined, headers: grpc.Metadata | undefined, trailers: grpc.Metadata | undefined): Outcome<A> => ({
  code: error === null ? grpc.status.OK : error.code,
  details: error === null ? "" : error.details,
  value,
  headers,
  trailers: error === null ? trailers : error.metadata
})

interface Ending {
  on(event: "metadata", listener: (metadata: grpc.Metadata) => void): unknown
  on(event: "status", listener: (status: grpc.StatusObject) => void): unknown
}

/** Collects a call's response metadata and trailing status (before the callback or `end`). */
const watch = (call: Ending) => {
  const seen: { headers: grpc.Metadata | undefined; trailers: grpc.Metadata | undefined } = { headers: undefined, trailers: undefined }
  call.on("metadata", (m) => {
    seen.headers = m
  })
  call.on("status", (s) => {
    seen.trailers = s.metadata
  })
  return seen
}

export const unary = (client: EchoClient, request: Message, metadata = new grpc.Metadata(), options: grpc.CallOptions = {}) =>
  Effect.callback<Outcome<Message>>((resume) => {
    let seen: ReturnType<typeof watch> | undefined
    const call = client.unary(request, metadata, options, (error, value) =>
      // The status event comes after the callback; the callback's error carries the metadata.
      setImmediate(() => resume(Effect.succeed(endOf(error, value, seen?.headers, seen?.trailers)))))
    seen = watch(call)
  })

/** A server-streaming call read to its end: the messages, then the status. */
export const serverStream = (client: EchoClient, request: Message, options: grpc.CallOptions = {}) =>
  Effect.callback<Outcome<Array<Message>>>((resume) => {
    const call = client.serverStream(request, new grpc.Metadata(), options)
    const seen = watch(call)
    const messages: Array<Message> = []
    call.on("data", (m: Message) => messages.push(m))
    call.on("error", (error: grpc.ServiceError) => resume(Effect.succeed(endOf(error, messages, seen.headers, seen.trailers))))
    call.on("status", (s) => {
      if (s.code === grpc.status.OK) resume(Effect.succeed(endOf(null, messages, seen.headers, s.metadata)))
    })
  })

/** A client-streaming call that sends `requests`, then ends its side. */
export const clientStream = (client: EchoClient, requests: ReadonlyArray<Message>) =>
  Effect.callback<Outcome<Message>>((resume) => {
    let seen: ReturnType<typeof watch> | undefined
    const call = client.clientStream(new grpc.Metadata(), {}, (error, value) =>
      setImmediate(() => resume(Effect.succeed(endOf(error, value, seen?.headers, seen?.trailers)))))
    seen = watch(call)
    for (const r of requests) call.write(r)
    call.end()
  })

export { grpc }
