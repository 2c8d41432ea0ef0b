// Validates custom resources that kubeconform has no schema for here (Strimzi's KafkaTopic and
// KafkaUser, CloudNativePG's Cluster) with the @kubernetes-models validators, which are the
// CRDs' openAPIV3Schema compiled by ajv. Input: a JSON array of resources on stdin (the test
// renders the overlays and converts them). Prints one line per resource; exits 1 on any error.
import { Cluster } from "@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1/Cluster";
import { KafkaTopic } from "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1beta2/KafkaTopic";
import { KafkaUser } from "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1beta2/KafkaUser";

const models = {
  "postgresql.cnpg.io/v1/Cluster": Cluster,
  "kafka.strimzi.io/v1beta2/KafkaTopic": KafkaTopic,
  "kafka.strimzi.io/v1beta2/KafkaUser": KafkaUser,
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = 0;
for (const resource of JSON.parse(input)) {
  const key = `${resource.apiVersion}/${resource.kind}`;
  const Model = models[key];
  const name = `${resource.kind} ${resource.metadata?.name}`;
  if (!Model) {
    console.log(`${name}: no validator for ${key}`);
    failed++;
    continue;
  }
  try {
    new Model(resource).validate();
    console.log(`${name}: valid`);
  } catch (e) {
    console.log(`${name}: INVALID ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
