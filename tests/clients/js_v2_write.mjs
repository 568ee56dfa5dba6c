// Writes a deterministic corpus through the official npm `@influxdata/influxdb-client`
// (v2 write API, batching, gzip), as a Node.js user would.
//
// Usage: node js_v2_write.mjs URL TOKEN BUCKET N
//
// Point i: measurement `jsclient`, tag host=h{i % 50}; fields value=i + 0.5 (float),
// count=i (int), big=i (unsigned), ok=(i % 2 == 0), msg="j{i}, \"x\""; time =
// 1_650_000_000_000_000_000 + i ns. tests/e2e/clients.rs checks the same values.
import { InfluxDB, Point } from '@influxdata/influxdb-client'

const [url, token, bucket, n] = process.argv.slice(2)
const BASE = 1650000000000000000n
const writeApi = new InfluxDB({ url, token }).getWriteApi('inflow', bucket, 'ns', {
  batchSize: 5000,
  flushInterval: 0,
  maxRetries: 0,
  gzipThreshold: 1000,
})
for (let i = 0; i < Number(n); i++) {
  writeApi.writePoint(
    new Point('jsclient')
      .tag('host', `h${i % 50}`)
      .floatField('value', i + 0.5)
      .intField('count', i)
      .uintField('big', i)
      .booleanField('ok', i % 2 === 0)
      .stringField('msg', `j${i}, "x"`)
      .timestamp((BASE + BigInt(i)).toString()),
  )
}
try {
  await writeApi.close()
  console.log(`wrote ${n} points`)
} catch (e) {
  console.error(`write failed: ${e}`)
  process.exit(1)
}
