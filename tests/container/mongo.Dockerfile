# Test only: stands in for the compose stack's mongo:8.0 where no registry can be reached.
# SecantusDB (PyPI) speaks MongoDB's wire protocol; the entrypoint creates the root user from
# MONGO_INITDB_ROOT_USERNAME/PASSWORD on first start, as the mongo image does, then serves
# /data/db with SCRAM authentication on port 27017.
ARG BASE
FROM ${BASE}
RUN python3 -m venv /opt/mongo && /opt/mongo/bin/pip install --no-cache-dir secantusdb==0.7.0b3
COPY mongo-entrypoint.py /usr/local/bin/mongo-entrypoint.py
VOLUME ["/data/db"]
EXPOSE 27017
ENTRYPOINT ["/opt/mongo/bin/python", "/usr/local/bin/mongo-entrypoint.py"]
