"""boto3 against the emulator, unchanged: the wire shapes botocore sends and parses.

Not run by cargo. Start the example server, then run this with a Python that has boto3:

    PORT=8790 cargo run -p imagebuilder-emulator --example serve &
    IB_ENDPOINT=http://127.0.0.1:8790 python3 local/imagebuilder-emulator/tests/boto3_smoke.py
"""

import os
import time
import uuid

import boto3
from botocore.exceptions import ClientError

ENDPOINT = os.environ.get("IB_ENDPOINT", "http://127.0.0.1:8790")
# Against the local AWS the parent must be a real AMI in moto; the example server accepts any.
PARENT = os.environ.get("PARENT_AMI", "ami-0123456789abcdef0")


def expect_error(code, status, call, **kwargs):
    try:
        call(**kwargs)
    except ClientError as e:
        got = (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
        assert got == (code, status), got
        assert e.response["Error"]["Message"], e.response
        return
    raise AssertionError(f"expected {code}")


def main():
    ib = boto3.client(
        "imagebuilder",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    run = uuid.uuid4().hex[:8]
    recipe = ib.create_image_recipe(
        name=f"smoke {run}",
        semanticVersion="1.0.0",
        parentImage=PARENT,
        components=[{"componentArn": "arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x"}],
    )
    recipe_arn = recipe["imageRecipeArn"]
    assert recipe_arn.endswith(f":image-recipe/smoke-{run}/1.0.0"), recipe_arn
    assert recipe["clientToken"] and recipe["requestId"]
    expect_error(
        "ResourceAlreadyExistsException", 400, ib.create_image_recipe,
        name=f"smoke {run}", semanticVersion="1.0.0", parentImage=PARENT,
    )
    expect_error(
        "InvalidVersionNumberException", 400, ib.create_image_recipe,
        name=f"smoke {run}", semanticVersion="1.0", parentImage=PARENT,
    )

    infra = ib.create_infrastructure_configuration(name=f"smoke-{run}", instanceProfileName="ib-role")
    dist = ib.create_distribution_configuration(
        name=f"smoke-{run}",
        distributions=[
            {"region": "us-east-1", "amiDistributionConfiguration": {"name": "smoke-{{imagebuilder:buildDate}}"}},
            {"region": "eu-west-1"},
        ],
    )
    pipeline_arn = ib.create_image_pipeline(
        name=f"smoke-{run}",
        imageRecipeArn=recipe_arn,
        infrastructureConfigurationArn=infra["infrastructureConfigurationArn"],
        distributionConfigurationArn=dist["distributionConfigurationArn"],
        imageScanningConfiguration={"imageScanningEnabled": True},
        tags={"owner": "smoke"},
    )["imagePipelineArn"]
    got = ib.get_image_pipeline(imagePipelineArn=pipeline_arn)["imagePipeline"]
    assert got["imageTestsConfiguration"] == {"imageTestsEnabled": True, "timeoutMinutes": 720}, got

    token = str(uuid.uuid4())
    image_arn = ib.start_image_pipeline_execution(imagePipelineArn=pipeline_arn, clientToken=token)[
        "imageBuildVersionArn"
    ]
    again = ib.start_image_pipeline_execution(imagePipelineArn=pipeline_arn, clientToken=token)
    assert again["imageBuildVersionArn"] == image_arn
    expect_error("ResourceInUseException", 400, ib.start_image_pipeline_execution, imagePipelineArn=pipeline_arn)

    deadline = time.time() + 10
    while (image := ib.get_image(imageBuildVersionArn=image_arn)["image"])["state"]["status"] != "AVAILABLE":
        assert image["state"]["status"] in ("PENDING", "BUILDING", "TESTING", "DISTRIBUTING"), image["state"]
        assert time.time() < deadline, image["state"]
        time.sleep(0.1)
    amis = image["outputResources"]["amis"]
    assert [a["region"] for a in amis] == ["us-east-1", "eu-west-1"], amis
    assert all(a["image"].startswith("ami-") and a["accountId"] == "123456789012" for a in amis), amis

    images = ib.list_image_pipeline_images(imagePipelineArn=pipeline_arn)["imageSummaryList"]
    assert [i["arn"] for i in images] == [image_arn], images
    aggregations = ib.list_image_scan_finding_aggregations(
        filter={"name": "imageBuildVersionArn", "values": [image_arn]}
    )
    assert aggregations["aggregationType"] == "imageBuildVersionArn", aggregations
    counts = aggregations["responses"][0]["imageAggregation"]["severityCounts"]
    assert counts == {"all": 3, "critical": 0, "high": 1, "medium": 2}, counts
    findings = ib.list_image_scan_findings(filters=[{"name": "imageBuildVersionArn", "values": [image_arn]}])
    assert len(findings["findings"]) == 3 and findings["findings"][0]["firstObservedAt"].year >= 2024, findings

    ib.tag_resource(resourceArn=image_arn, tags={"k": "v"})
    assert ib.list_tags_for_resource(resourceArn=image_arn)["tags"] == {"k": "v"}
    ib.untag_resource(resourceArn=image_arn, tagKeys=["k"])
    assert ib.list_tags_for_resource(resourceArn=image_arn)["tags"] == {}
    expect_error(
        "ResourceNotFoundException", 404, ib.get_image_pipeline,
        imagePipelineArn="arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/missing",
    )
    print("boto3 smoke: OK")


if __name__ == "__main__":
    main()
