"""Label Studio: labeling config from the annotation template, REST client, task conversion."""
