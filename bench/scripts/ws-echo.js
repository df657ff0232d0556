// The WebSocket bench's upstream: an echo server (the `ws` package, no compression) on
// 127.0.0.1:<port>; every message goes back as it came. Prints "ready" once listening.
import { WebSocketServer } from "ws"

const port = Number(process.argv[2])
const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false })
wss.on("connection", (socket) => {
  socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }))
  socket.on("error", () => socket.terminate())
})
wss.on("listening", () => console.log("ready"))
