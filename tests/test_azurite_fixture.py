"""The azurite fixture serves real Blob Storage that the official SDK can use."""

from azure.storage.blob import BlobServiceClient


def test_blob_round_trip_through_the_sdk(azurite):
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container("roundtrip")

    container.upload_blob("inputs/hello.txt", b"hello from the portal\n")

    assert container.download_blob("inputs/hello.txt").readall() == b"hello from the portal\n"
    assert [blob.name for blob in container.list_blobs()] == ["inputs/hello.txt"]


def test_fixture_uses_the_well_known_dev_account(azurite):
    assert azurite.account_name == "devstoreaccount1"
    assert azurite.blob_endpoint.startswith("http://127.0.0.1:")
    assert f"BlobEndpoint={azurite.blob_endpoint};" in azurite.connection_string
